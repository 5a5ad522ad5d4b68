using System.Globalization;
using Proxy.Bench.E2e.Infrastructure;

namespace Proxy.Bench.E2e;

/// <summary>Options of <c>bench -- e2e</c>; <see cref="Usage"/> lists them.</summary>
internal sealed class E2eOptions
{
    public const string Usage = """
        usage: dotnet run -c Release --project bench -- e2e [options]

        Scenario
          --scenario NAME          l4 (default; the only one so far)
          --repeat R               rounds of every (variant, peer) pair, interleaved (default 5)
          --duration S             seconds per iperf3 run, -t (default 3)
          --variants LIST          comma list of forward,reverse,parallel (default all three)
          --parallel-streams N     streams for the "parallel" variant, -P (default 4)
          --startup-repeat N       fresh starts per peer for start-up timing (default: --repeat; 0 skips)

        Peers
          --peers LIST             comma list of direct,haproxy,sidecar-jit,sidecar-aot,sidecar-splice-off
                                   (default all)
          --jit / --aot            which sidecar builds to publish and run (default both); sidecar-splice-off
                                   uses the JIT build when it is selected, else the AOT build
          --sidecar-arg ARG        extra argument for every sidecar peer (repeatable), e.g.
                                   --sidecar-arg=--inline-scheduling --sidecar-arg=true
          --haproxy-splice MODE    auto (option splice-auto, default), always (splice-request and
                                   splice-response) or off

        Measurement
          --syscalls               also count each proxy's system calls per run (perf stat; all and splice)

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

    public int ParallelStreams { get; private set; } = 4;

    public int StartupRepeat { get; private set; } = -1;

    public IReadOnlySet<string> Peers { get; private set; } = AllPeers;

    public bool Jit { get; private set; }

    public bool Aot { get; private set; }

    public IReadOnlyList<string> SidecarArguments { get; private set; } = [];

    public string? OutputDirectory { get; private set; }

    public string HaproxySplice { get; private set; } = "auto";

    public bool CountSyscalls { get; private set; }

    public bool AllowInstall { get; private set; } = true;

    public bool KeepTemp { get; private set; }

    public bool ShowHelp { get; private set; }

    public static IReadOnlySet<string> AllPeers { get; } = new HashSet<string>(StringComparer.Ordinal)
    {
        "direct", "haproxy", "sidecar-jit", "sidecar-aot", "sidecar-splice-off",
    };

    public static IReadOnlySet<string> AllVariants { get; } = new HashSet<string>(StringComparer.Ordinal) { "forward", "reverse", "parallel" };

    /// <summary>Parses <paramref name="args"/>; throws <see cref="E2eException"/> naming every bad option at once.</summary>
    public static E2eOptions Parse(IReadOnlyList<string> args)
    {
        var options = new E2eOptions();
        var errors = new List<string>();
        var sidecarArguments = new List<string>();
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

            IReadOnlyList<string> List(IReadOnlySet<string> allowed)
            {
                var items = Value().Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
                foreach (var item in items)
                {
                    if (!allowed.Contains(item))
                    {
                        errors.Add($"{arg}: unknown '{item}' (known: {string.Join(',', allowed)})");
                    }
                }

                if (items.Length == 0)
                {
                    errors.Add($"{arg}: empty list");
                }

                return items;
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
                    options.Duration = TimeSpan.FromSeconds(Positive(1));
                    break;
                case "--variants":
                    options.Variants = List(AllVariants);
                    break;
                case "--parallel-streams":
                    options.ParallelStreams = Positive(2);
                    break;
                case "--startup-repeat":
                    options.StartupRepeat = Positive(0);
                    break;
                case "--peers":
                    options.Peers = new HashSet<string>(List(AllPeers), StringComparer.Ordinal);
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
