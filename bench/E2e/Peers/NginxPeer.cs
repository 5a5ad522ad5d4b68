using System.Globalization;
using System.Net;
using System.Text;
using Proxy.Bench.E2e.Infrastructure;

namespace Proxy.Bench.E2e.Peers;

/// <summary>
/// nginx as a reverse proxy for the HTTP/1.1 and h2c scenarios: one worker, no master
/// (<c>master_process off</c>, so the pid we start is the one doing the work), foreground, logs off, temp paths
/// in its own work dir, keep-alive to the upstream. Readiness: a second server answering 200 on /ready.
/// </summary>
internal sealed class NginxPeer : ProcessPeer
{
    private readonly string _executable;
    private readonly string _version;

    public NginxPeer(string executable, string version, string workDirectory)
        : base(workDirectory)
    {
        _executable = executable;
        _version = version;
    }

    public override string Name => "nginx";

    public override string Description =>
        $"{_version}, 1 worker, master_process off{(Config?.Protocol == ProxyProtocol.Http2 ? ", listen http2 (h2c prior knowledge)" : string.Empty)}, upstream keepalive 64";

    public static ToolRequirement Requirement { get; } = new("nginx", "nginx");

    /// <summary>The nginx.conf text; <paramref name="workDirectory"/> holds its pid and temp files.</summary>
    public static string BuildConfig(PeerConfig config, IPEndPoint listen, IPEndPoint ready, string workDirectory)
    {
        var http2 = config.Protocol switch
        {
            ProxyProtocol.Http1 => false,
            ProxyProtocol.Http2 => true,
            _ => throw new NotSupportedException($"no nginx configuration for {config.Protocol} (opaque TCP would need the stream module)"),
        };

        var text = new StringBuilder();
        text.AppendLine("daemon off;");
        text.AppendLine("master_process off;");
        text.AppendLine("worker_processes 1;");
        text.AppendLine(CultureInfo.InvariantCulture, $"pid {workDirectory}/nginx.pid;");
        text.AppendLine("error_log stderr warn;");
        text.AppendLine("events { worker_connections 4096; }");
        text.AppendLine("http {");
        text.AppendLine("    access_log off;");
        foreach (var temp in new[] { "client_body", "proxy", "fastcgi", "uwsgi", "scgi" })
        {
            text.AppendLine(CultureInfo.InvariantCulture, $"    {temp}_temp_path {workDirectory}/{temp};");
        }

        text.AppendLine("    keepalive_requests 1000000;");
        text.AppendLine("    upstream target {");
        text.AppendLine(CultureInfo.InvariantCulture, $"        server {config.Upstream};");
        text.AppendLine("        keepalive 64;");
        text.AppendLine("    }");
        text.AppendLine("    server {");
        text.AppendLine(CultureInfo.InvariantCulture, $"        listen {listen}{(http2 ? " http2" : string.Empty)} backlog=4096;");
        text.AppendLine("        location / {");
        text.AppendLine("            proxy_pass http://target;");
        text.AppendLine("            proxy_http_version 1.1;");
        text.AppendLine("            proxy_set_header Connection \"\";");
        text.AppendLine("        }");
        text.AppendLine("    }");
        text.AppendLine("    server {");
        text.AppendLine(CultureInfo.InvariantCulture, $"        listen {ready};");
        text.AppendLine("        location = /ready { return 200 \"ready\\n\"; }");
        text.AppendLine("    }");
        text.AppendLine("}");
        return text.ToString();
    }

    /// <summary>"nginx 1.22.1" from <c>nginx -v</c> (which prints to stderr).</summary>
    public static async Task<string> ReadVersionAsync(string executable, CancellationToken cancellationToken)
    {
        var result = await ProcessRunner.RunAsync(executable, ["-v"], TimeSpan.FromSeconds(10), cancellationToken);
        var line = result.RecentOutput.Split('\n', StringSplitOptions.RemoveEmptyEntries).FirstOrDefault() ?? "nginx";

        // "nginx version: nginx/1.22.1"
        var slash = line.LastIndexOf('/');
        return slash >= 0 ? $"nginx {line[(slash + 1)..].Trim()}" : line;
    }

    protected override ChildProcess StartProcess(PeerConfig config, IPEndPoint listen, IPEndPoint ready)
    {
        var path = Path.Combine(WorkDirectory, "nginx.conf");
        File.WriteAllText(path, BuildConfig(config, listen, ready, WorkDirectory));
        return ChildProcess.Start(Name, _executable, ["-p", WorkDirectory, "-c", path, "-e", "stderr"]);
    }
}
