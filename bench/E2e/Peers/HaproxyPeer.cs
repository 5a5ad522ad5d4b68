using System.Globalization;
using System.Net;
using System.Text;
using Proxy.Bench.E2e.Infrastructure;

namespace Proxy.Bench.E2e.Peers;

/// <summary>
/// HAProxy in the foreground (<c>-db</c>), one thread, one process (so /proc/PID/stat covers all of it).
/// Opaque TCP: <c>mode tcp</c> with <c>option splice-auto</c> (or forced/no splice). HTTP/1.1 and h2c: <c>mode http</c>
/// with <c>http-reuse always</c>. Readiness: a <c>monitor-uri</c> frontend, bound together with the proxy frontend.
/// </summary>
internal sealed class HaproxyPeer : ProcessPeer
{
    private readonly string _executable;
    private readonly string _version;
    private readonly string _splice;

    /// <param name="splice">"auto" (option splice-auto), "always" (splice-request + splice-response) or "off".</param>
    public HaproxyPeer(string executable, string version, string splice, string workDirectory)
        : base(workDirectory)
    {
        _executable = executable;
        _version = version;
        _splice = splice;
    }

    public override string Name => "haproxy";

    public override string Description => Config?.Protocol is ProxyProtocol.Http1 or ProxyProtocol.Http2
        ? $"{_version}, mode http{(Config.Protocol == ProxyProtocol.Http2 ? ", bind proto h2 (h2c)" + (Config.Http2Upstream ? ", server proto h2" : ", h1 to the backend") : string.Empty)}, http-reuse always, nbthread 1"
        : $"{_version}, mode tcp, {string.Join(" + ", SpliceOptions(_splice).DefaultIfEmpty("no splice"))}, nbthread 1";

    /// <summary>The configuration text for <paramref name="config"/> (kept testable and printable).</summary>
    public static string BuildConfig(PeerConfig config, IPEndPoint listen, IPEndPoint ready, string splice = "auto")
    {
        var text = new StringBuilder();
        text.AppendLine("global");
        text.AppendLine("    nbthread 1");
        text.AppendLine("    maxconn 2000");
        text.AppendLine("defaults");
        text.AppendLine(config.Protocol == ProxyProtocol.Tcp ? "    mode tcp" : "    mode http");
        text.AppendLine("    timeout connect 5s");
        text.AppendLine("    timeout client 60s");
        text.AppendLine("    timeout server 60s");
        text.AppendLine("    timeout http-request 5s");
        text.AppendLine("frontend ready");
        text.AppendLine("    mode http");
        text.AppendLine(CultureInfo.InvariantCulture, $"    bind {ready}");
        text.AppendLine("    monitor-uri /ready");
        text.AppendLine("frontend bench");
        switch (config.Protocol)
        {
            case ProxyProtocol.Tcp:
                text.AppendLine(CultureInfo.InvariantCulture, $"    bind {listen}");
                AppendSplice(text, splice);
                text.AppendLine("    default_backend upstream");
                text.AppendLine("backend upstream");
                AppendSplice(text, splice);
                text.AppendLine(CultureInfo.InvariantCulture, $"    server target {config.Upstream}");
                break;

            // HTTP/1.1 (wrk) and h2c (h2load) scenarios: keep-alive both sides, upstream connections shared
            // between clients (the settings PERFORMANCE.md was measured with).
            case ProxyProtocol.Http1:
                text.AppendLine(CultureInfo.InvariantCulture, $"    bind {listen}");
                text.AppendLine("    option http-keep-alive");
                text.AppendLine("    default_backend upstream");
                text.AppendLine("backend upstream");
                text.AppendLine("    http-reuse always");
                text.AppendLine(CultureInfo.InvariantCulture, $"    server target {config.Upstream}");
                break;
            case ProxyProtocol.Http2:
                text.AppendLine(CultureInfo.InvariantCulture, $"    bind {listen} proto h2");
                text.AppendLine("    default_backend upstream");
                text.AppendLine("backend upstream");
                text.AppendLine("    http-reuse always");
                // h2c from clients (prior knowledge); HTTP/1.1 to the backend, or h2c with --upstream h2.
                text.AppendLine(CultureInfo.InvariantCulture, $"    server target {config.Upstream}{(config.Http2Upstream ? " proto h2" : string.Empty)}");
                break;
            default:
                throw new NotSupportedException($"no HAProxy configuration for {config.Protocol}");
        }

        return text.ToString();
    }

    // HAProxy 2.6's splice-auto only splices once it judges a stream fast (full buffers); on loopback
    // iperf3 it was measured not to splice at all, hence the "always" choice.
    private static string[] SpliceOptions(string splice) => splice switch
    {
        "auto" => ["option splice-auto"],
        "always" => ["option splice-request", "option splice-response"],
        "off" => [],
        _ => throw new ArgumentOutOfRangeException(nameof(splice), splice, "auto, always or off"),
    };

    private static void AppendSplice(StringBuilder text, string splice)
    {
        foreach (var option in SpliceOptions(splice))
        {
            text.AppendLine(CultureInfo.InvariantCulture, $"    {option}");
        }
    }

    /// <summary>"HAProxy 2.6.12" from <c>haproxy -v</c>.</summary>
    public static async Task<string> ReadVersionAsync(string executable, CancellationToken cancellationToken)
    {
        var result = await ProcessRunner.RunAsync(executable, ["-v"], TimeSpan.FromSeconds(10), cancellationToken);
        var line = result.StandardOutput.Split('\n', StringSplitOptions.RemoveEmptyEntries).FirstOrDefault() ?? "HAProxy";

        // "HAProxy version 2.6.12-1+deb12u1 2023/12/16 - https://haproxy.org/"
        var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        return parts.Length >= 3 ? $"HAProxy {parts[2]}" : line;
    }

    protected override ChildProcess StartProcess(PeerConfig config, IPEndPoint listen, IPEndPoint ready)
    {
        var path = Path.Combine(WorkDirectory, "haproxy.cfg");
        File.WriteAllText(path, BuildConfig(config, listen, ready, _splice));
        return ChildProcess.Start(Name, _executable, ["-db", "-f", path]);
    }
}
