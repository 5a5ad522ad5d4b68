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
    /// <param name="http2">Listen for h2c (prior knowledge) instead of HTTP/1.1.</param>
    /// <param name="probe">With <paramref name="http2"/>: an extra HTTP/1.1 listener for the readiness probe.</param>
    public static string BuildConfig(IPEndPoint listen, string workDirectory, bool http2 = false, IPEndPoint? probe = null)
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
        text.AppendLine(CultureInfo.InvariantCulture, $"        listen {listen}{(http2 ? " http2" : string.Empty)} backlog=4096;");
        if (probe is not null)
        {
            text.AppendLine(CultureInfo.InvariantCulture, $"        listen {probe};");
        }

        if (http2)
        {
            // Peers multiplex many streams on few connections: nginx's default of 128 streams per connection
            // and 1000 requests per connection would close them under load.
            text.AppendLine("        http2_max_concurrent_streams 1000;");
            text.AppendLine("        http2_max_requests 1000000;");
        }

        text.AppendLine(CultureInfo.InvariantCulture, $"        location / {{ return 200 \"{Body}\"; }}");
        text.AppendLine("    }");
        text.AppendLine("}");
        return text.ToString();
    }

    /// <summary>Starts the backend on a free port and waits until it answers 200.</summary>
    public static async Task<NginxBackend> StartAsync(string executable, string workDirectory, CancellationToken cancellationToken, bool http2 = false)
    {
        var endPoint = FreePorts.Next();
        var path = Path.Combine(workDirectory, "nginx-backend.conf");
        var probe = http2 ? FreePorts.Next() : endPoint;
        await File.WriteAllTextAsync(path, BuildConfig(endPoint, workDirectory, http2, http2 ? probe : null), cancellationToken);
        var process = ChildProcess.Start("nginx-backend", executable, ["-p", workDirectory, "-c", path, "-e", "stderr"]);
        try
        {
            await Probes.WaitForHttp200Async(probe, "/", process.StartTimestamp, process, TimeSpan.FromSeconds(20), cancellationToken);
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
