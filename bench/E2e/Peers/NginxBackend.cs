using System.Globalization;
using System.Net;
using System.Text;
using Proxy.Bench.E2e.Infrastructure;

namespace Proxy.Bench.E2e.Peers;

/// <summary>
/// The HTTP target every peer forwards to: nginx, one worker, no master, answering every request with the same
/// 13-byte body (<see cref="Body"/>), keep-alive without a request limit, logs off. One instance is shared by all
/// peers of a run, so each sees the same backend.
/// </summary>
internal sealed class NginxBackend : IAsyncDisposable
{
    /// <summary>The response body: 13 bytes, as in the measurements of PERFORMANCE.md.</summary>
    public const string Body = "Hello, world!";

    private readonly ChildProcess _process;

    private NginxBackend(ChildProcess process, IPEndPoint endPoint)
    {
        _process = process;
        EndPoint = endPoint;
    }

    public IPEndPoint EndPoint { get; }

    public ChildProcess Process => _process;

    public bool IsRunning => !_process.HasExited;

    /// <summary>The nginx.conf text; <paramref name="workDirectory"/> holds its pid and temp files.</summary>
    public static string BuildConfig(IPEndPoint listen, string workDirectory)
    {
        var text = new StringBuilder();
        text.AppendLine("daemon off;");
        text.AppendLine("master_process off;");
        text.AppendLine("worker_processes 1;");
        text.AppendLine(CultureInfo.InvariantCulture, $"pid {workDirectory}/nginx.pid;");
        text.AppendLine("error_log stderr warn;");
        text.AppendLine("events { worker_connections 8192; }");
        text.AppendLine("http {");
        text.AppendLine("    access_log off;");
        foreach (var temp in new[] { "client_body", "proxy", "fastcgi", "uwsgi", "scgi" })
        {
            text.AppendLine(CultureInfo.InvariantCulture, $"    {temp}_temp_path {workDirectory}/{temp};");
        }

        text.AppendLine("    keepalive_requests 1000000;");
        text.AppendLine("    keepalive_timeout 120s;");
        text.AppendLine("    server_tokens off;");
        text.AppendLine("    default_type text/plain;");
        text.AppendLine("    server {");
        text.AppendLine(CultureInfo.InvariantCulture, $"        listen {listen} backlog=4096;");
        text.AppendLine(CultureInfo.InvariantCulture, $"        location / {{ return 200 \"{Body}\"; }}");
        text.AppendLine("    }");
        text.AppendLine("}");
        return text.ToString();
    }

    /// <summary>Starts the backend on a free port and waits until it answers 200.</summary>
    public static async Task<NginxBackend> StartAsync(string executable, string workDirectory, CancellationToken cancellationToken)
    {
        var endPoint = FreePorts.Next();
        var path = Path.Combine(workDirectory, "nginx-backend.conf");
        await File.WriteAllTextAsync(path, BuildConfig(endPoint, workDirectory), cancellationToken);
        var process = ChildProcess.Start("nginx-backend", executable, ["-p", workDirectory, "-c", path, "-e", "stderr"]);
        try
        {
            await Probes.WaitForHttp200Async(endPoint, "/", process.StartTimestamp, process, TimeSpan.FromSeconds(20), cancellationToken);
        }
        catch
        {
            await process.DisposeAsync();
            throw;
        }

        return new NginxBackend(process, endPoint);
    }

    public ValueTask DisposeAsync() => _process.DisposeAsync();
}
