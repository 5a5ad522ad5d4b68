using System.Globalization;
using Proxy.Bench.E2e.Infrastructure;

namespace Proxy.Bench.E2e;

/// <summary>Options of <c>bench -- e2e</c>; <see cref="Usage"/> lists them.</summary>
internal sealed class E2eOptions
{
    public const string Usage = """
        usage: dotnet run -c Release --project bench -- e2e [options]

        Scenario
          --scenario NAME          l4 (default: opaque TCP, iperf3), http (HTTP/1.1, wrk), h2 (h2c with
                                   prior knowledge, h2load; HTTP/1.1 to the backend) or mesh (HTTP/1.1, wrk
                                   through two proxy processes: hop 1 -> hop 2 -> backend, plaintext or mTLS)
          --repeat R               rounds of every (variant, peer) pair, interleaved (default 5)
          --duration S             seconds per load run (iperf3 -t, wrk -d, h2load -D; "2" or "2s"; default 3)
          --variants LIST          l4: comma list of forward,reverse,parallel (default all three)
                                   http: comma list of c32,c1,close,c32cpu,closecpu (default all five): wrk
                                   -t1 with 32 keep-alive connections, 1 connection (latency), 32
                                   connections with 'Connection: close' (connection rate), and c32 and close
                                   with each proxy process held to --cpu-limit (a pod's CPU limit; needs
                                   root and a cgroup cpu controller; direct is left out of them)
                                   h2: comma list of c16m10,c1m1 (default both): h2load -t1 with 16
                                   connections x 10 concurrent streams, 1 connection x 1 stream (latency)
                                   mesh: comma list of c32,c1 (default both), as in http
          --cpu-limit CORES        http: the c32cpu and closecpu variants' CFS quota per proxy process, in CPUs (default
                                   0.5, per 100 ms period as Kubernetes sets a container's limit)
          --parallel-streams N     l4: streams for the "parallel" variant, -P (default 4)
          --startup-repeat N       l4: fresh starts per peer for start-up timing (default: --repeat; 0 skips)
          --warmup S               http, h2, mesh: seconds of wrk -c32 (h2: h2load -c16 -m10) through each peer
                                   before the measured rounds (JIT tiering, pools; default 2; 0 skips)

        Peers
          --peers LIST             l4: comma list of direct,haproxy,sidecar-jit,sidecar-aot,sidecar-splice-off
                                   http, h2: comma list of direct,haproxy,nginx,yarp,sidecar-jit,sidecar-aot
                                   (h2's direct is nghttpd, not the nginx backend)
                                   mesh: comma list of direct,haproxy-plain,haproxy-tls,sidecar-plain,
                                   sidecar-mtls (each peer but direct is a pair of processes)
                                   (default all of the scenario's)
          --jit / --aot            which sidecar builds to publish and run (default both); sidecar-splice-off
                                   uses the JIT build when it is selected, else the AOT build; mesh runs
                                   one build: AOT unless only --jit is given
          --upstream h1|h2         h2: the backend and every proxy's upstream side: HTTP/1.1 (default) or h2c
                                   (nginx backend with listen http2; HAProxy server proto h2, YARP HTTP/2.0
                                   exact, sidecar upstreamProtocol http2; the nginx peer cannot, and is left out)
          --sidecar-protocol P     http, h2: the bench listener's "protocol" value in the sidecar config (default
                                   http); "none" leaves the key out (the listener is then opaque TCP)
          --sidecar-arg ARG        extra argument for every sidecar peer (repeatable), e.g.
                                   --sidecar-arg=--inline-scheduling --sidecar-arg=true
          --haproxy-splice MODE    auto (option splice-auto, default), always (splice-request and
                                   splice-response) or off
          --haproxy-alpn P         mesh: the ALPN haproxy-tls's hop 1 offers hop 2: h2 (default, one
                                   multiplexed connection) or http/1.1

        Measurement
          --syscalls               also count each proxy's system calls per run (perf stat; l4: all and
                                   splice, per MB; http: all, per request; not in h2)

        Housekeeping
          --output DIR             where the markdown table goes (default bench/results)
          --no-install             fail instead of apt-get installing missing tools
          --keep-temp              keep the temp dir (configs, published builds)
          -h, --help               this text
        """;

    public string Scenario { get; private set; } = "l4";

    public int Repeat { get; private set; } = 5;

    public TimeSpan Duration { get; private set; } = TimeSpan.FromSeconds(3);

    public IReadOnlyList<string> Variants { get; private set; } = ["forward", "reverse", "parallel"];

    /// <summary>HTTP scenario: seconds of unrecorded wrk load through each peer before the measured rounds.</summary>
    public TimeSpan Warmup { get; private set; } = TimeSpan.FromSeconds(2);

    /// <summary>HTTP scenario: the sidecar listener's "protocol" value; null leaves the key out.</summary>
    public string? SidecarProtocol { get; private set; } = "http";

    /// <summary>h2 scenario: the proxies forward to an h2c backend over HTTP/2 (<c>--upstream h2</c>).</summary>
    public bool Http2Upstream { get; private set; }

    public int ParallelStreams { get; private set; } = 4;

    /// <summary>The http scenario's c32cpu and closecpu variants: CPUs each proxy process may use (CFS quota per period).</summary>
    public double CpuLimit { get; private set; } = 0.5;

    public int StartupRepeat { get; private set; } = -1;

    public IReadOnlySet<string> Peers { get; private set; } = AllPeers;

    public bool Jit { get; private set; }

    public bool Aot { get; private set; }

    public IReadOnlyList<string> SidecarArguments { get; private set; } = [];

    public string? OutputDirectory { get; private set; }

    public string HaproxySplice { get; private set; } = "auto";

    /// <summary>Mesh scenario: the ALPN protocol haproxy-tls's hop 1 offers hop 2 ("h2" or "http/1.1").</summary>
    public string HaproxyAlpn { get; private set; } = "h2";

    public bool CountSyscalls { get; private set; }

    public bool AllowInstall { get; private set; } = true;

    public bool KeepTemp { get; private set; }

    public bool ShowHelp { get; private set; }

    /// <summary>The L4 scenario's peers (the default scenario).</summary>
    public static IReadOnlySet<string> AllPeers { get; } = new HashSet<string>(StringComparer.Ordinal)
    {
        "direct", "haproxy", "sidecar-jit", "sidecar-aot", "sidecar-splice-off",
    };

    /// <summary>The L4 scenario's variants.</summary>
    public static IReadOnlySet<string> AllVariants { get; } = new HashSet<string>(StringComparer.Ordinal) { "forward", "reverse", "parallel" };

    public static IReadOnlySet<string> HttpPeers { get; } = new HashSet<string>(StringComparer.Ordinal)
    {
        "direct", "haproxy", "nginx", "yarp", "sidecar-jit", "sidecar-aot",
    };

    public static IReadOnlyList<string> HttpVariants { get; } = ["c32", "c1", "close", "c32cpu", "closecpu"];

    /// <summary>The two-hop mesh scenario's peers, in table order: each but direct is a pair of processes.</summary>
    public static IReadOnlySet<string> MeshPeers { get; } = new HashSet<string>(StringComparer.Ordinal)
    {
        "direct", "haproxy-plain", "haproxy-tls", "sidecar-plain", "sidecar-mtls",
    };

    /// <summary>The mesh scenario's variants: the HTTP/1.1 scenario's keep-alive ones.</summary>
    public static IReadOnlyList<string> MeshVariants { get; } = ["c32", "c1"];

    /// <summary>The h2c scenario's variants: h2load -c16 -m10 (the configuration) and -c1 -m1 (latency).</summary>
    public static IReadOnlyList<string> H2Variants { get; } = ["c16m10", "c1m1"];

    public static IReadOnlyList<string> Scenarios { get; } = ["l4", "http", "h2", "mesh"];

    /// <summary>Peers a scenario knows, in table order (h2 has the HTTP/1.1 scenario's, with nghttpd as direct).</summary>
    public static IReadOnlySet<string> PeersOf(string scenario) => scenario switch
    {
        "http" or "h2" => HttpPeers,
        "mesh" => MeshPeers,
        _ => AllPeers,
    };

    /// <summary>Variants a scenario knows, in run order.</summary>
    public static IReadOnlyList<string> VariantsOf(string scenario) => scenario switch
    {
        "http" => HttpVariants,
        "h2" => H2Variants,
        "mesh" => MeshVariants,
        _ => ["forward", "reverse", "parallel"],
    };

    /// <summary>Parses <paramref name="args"/>; throws <see cref="E2eException"/> naming every bad option at once.</summary>
    public static E2eOptions Parse(IReadOnlyList<string> args)
    {
        var options = new E2eOptions();
        var errors = new List<string>();
        var sidecarArguments = new List<string>();
        string[]? variants = null;
        string[]? peers = null;
        for (var i = 0; i < args.Count; i++)
        {
            var arg = args[i];
            string? inlineValue = null;
            var equals = arg.IndexOf('=', StringComparison.Ordinal);
            if (arg.StartsWith("--", StringComparison.Ordinal) && equals > 0)
            {
                inlineValue = arg[(equals + 1)..];
                arg = arg[..equals];
            }

            string Value()
            {
                if (inlineValue is not null)
                {
                    return inlineValue;
                }

                if (i + 1 < args.Count)
                {
                    return args[++i];
                }

                errors.Add($"{arg} needs a value");
                return string.Empty;
            }

            int Positive(int min)
            {
                var text = Value();
                if (int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var value) && value >= min)
                {
                    return value;
                }

                errors.Add($"{arg}: '{text}' is not an integer >= {min}");
                return min;
            }

            // Items are checked against the scenario's names once every option is read (--scenario may come last).
            string[] List()
            {
                var items = Value().Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
                if (items.Length == 0)
                {
                    errors.Add($"{arg}: empty list");
                }

                return items;
            }

            TimeSpan Seconds(int min)
            {
                var text = Value();
                var number = text.EndsWith('s') ? text[..^1] : text;
                if (int.TryParse(number, NumberStyles.Integer, CultureInfo.InvariantCulture, out var value) && value >= min)
                {
                    return TimeSpan.FromSeconds(value);
                }

                errors.Add($"{arg}: '{text}' is not a whole number of seconds >= {min}");
                return TimeSpan.FromSeconds(min);
            }

            switch (arg)
            {
                case "--scenario":
                    options.Scenario = Value();
                    break;
                case "--repeat":
                    options.Repeat = Positive(1);
                    break;
                case "--duration":
                    options.Duration = Seconds(1);
                    break;
                case "--warmup":
                    options.Warmup = Seconds(0);
                    break;
                case "--variants":
                    variants = List();
                    break;
                case "--cpu-limit":
                    var cores = Value();
                    if (double.TryParse(cores, NumberStyles.Float, CultureInfo.InvariantCulture, out var limit) && limit is >= 0.01 and <= 64)
                    {
                        options.CpuLimit = limit;
                    }
                    else
                    {
                        errors.Add($"--cpu-limit: '{cores}' is not a number of CPUs from 0.01 to 64");
                    }

                    break;
                case "--parallel-streams":
                    options.ParallelStreams = Positive(2);
                    break;
                case "--startup-repeat":
                    options.StartupRepeat = Positive(0);
                    break;
                case "--peers":
                    peers = List();
                    break;
                case "--sidecar-protocol":
                    var protocol = Value();
                    options.SidecarProtocol = protocol == "none" ? null : protocol;
                    if (protocol.Length == 0)
                    {
                        errors.Add("--sidecar-protocol: empty value (use none to leave the key out)");
                    }

                    break;
                case "--upstream":
                    var upstream = Value();
                    options.Http2Upstream = upstream == "h2";
                    if (upstream is not ("h1" or "h2"))
                    {
                        errors.Add($"--upstream: '{upstream}' is not h1 or h2");
                    }

                    break;
                case "--jit":
                    options.Jit = true;
                    break;
                case "--aot":
                    options.Aot = true;
                    break;
                case "--sidecar-arg":
                    sidecarArguments.Add(Value());
                    break;
                case "--haproxy-splice":
                    options.HaproxySplice = Value();
                    if (options.HaproxySplice is not ("auto" or "always" or "off"))
                    {
                        errors.Add($"--haproxy-splice: '{options.HaproxySplice}' is not auto, always or off");
                    }

                    break;
                case "--haproxy-alpn":
                    options.HaproxyAlpn = Value();
                    if (options.HaproxyAlpn is not ("h2" or "http/1.1"))
                    {
                        errors.Add($"--haproxy-alpn: '{options.HaproxyAlpn}' is not h2 or http/1.1");
                    }

                    break;
                case "--syscalls":
                    options.CountSyscalls = true;
                    break;
                case "--output":
                    options.OutputDirectory = Value();
                    break;
                case "--no-install":
                    options.AllowInstall = false;
                    break;
                case "--keep-temp":
                    options.KeepTemp = true;
                    break;
                case "-h" or "--help":
                    options.ShowHelp = true;
                    break;
                default:
                    errors.Add($"unknown option '{args[i]}'");
                    break;
            }
        }

        if (!Scenarios.Contains(options.Scenario))
        {
            errors.Add($"--scenario: unknown '{options.Scenario}' (known: {string.Join(',', Scenarios)})");
        }
        else
        {
            var knownVariants = VariantsOf(options.Scenario);
            options.Variants = variants is null ? knownVariants : Known("--variants", variants, knownVariants);
            var knownPeers = PeersOf(options.Scenario);
            options.Peers = peers is null
                ? knownPeers
                : new HashSet<string>(Known("--peers", peers, [.. knownPeers]), StringComparer.Ordinal);
        }

        string[] Known(string option, string[] items, IReadOnlyList<string> known)
        {
            foreach (var item in items)
            {
                if (!known.Contains(item))
                {
                    errors.Add($"{option}: unknown '{item}' for scenario {options.Scenario} (known: {string.Join(',', known)})");
                }
            }

            return items;
        }

        if (!options.Jit && !options.Aot)
        {
            options.Jit = options.Aot = true;
        }

        if (options.StartupRepeat < 0)
        {
            options.StartupRepeat = options.Repeat;
        }

        options.SidecarArguments = sidecarArguments;
        if (errors.Count > 0)
        {
            throw new E2eException(string.Join('\n', errors) + "\n\n" + Usage);
        }

        return options;
    }
}
