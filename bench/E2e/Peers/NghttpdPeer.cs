using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Proxy.Bench.E2e.Infrastructure;

namespace Proxy.Bench.E2e.Peers;

/// <summary>
/// "direct" of the h2c scenario: no proxy, h2load straight to an h2c server. nginx (the backend) cannot take h2c
/// on its HTTP/1.1 listener, so this is nghttpd (Debian nghttp2-server) serving the same 13-byte body from a file:
/// <c>nghttpd --no-tls -a 127.0.0.1 -d DIR PORT</c>, one worker. A different server than the proxies' backend,
/// so direct is a reference point for h2load itself, not an exact "proxy removed" baseline. Readiness: the port
/// accepts a TCP connection (nghttpd has no HTTP/1.1 endpoint to probe).
/// </summary>
internal sealed class NghttpdPeer : IPeer
{
    private readonly string _executable;
    private readonly string _version;
    private readonly string _workDirectory;
    private ChildProcess? _process;
    private IPEndPoint? _listen;

    public NghttpdPeer(string executable, string version, string workDirectory)
    {
        _executable = executable;
        _version = version;
        _workDirectory = workDirectory;
    }

    public static ToolRequirement Requirement { get; } = new("nghttpd", "nghttp2-server");

    public string Name => "direct";

    public string Description => $"no proxy: h2load -> {_version} (--no-tls, 1 worker, {NginxBackend.Body.Length}-byte file), not the nginx backend";

    public ChildProcess? Process => _process;

    public IPEndPoint ListenEndPoint => _listen ?? throw new InvalidOperationException("direct (nghttpd) not launched");

    /// <summary>The nghttpd command line after the executable.</summary>
    public static IReadOnlyList<string> BuildArguments(IPEndPoint listen, string documentRoot) =>
        ["--no-tls", "-n", "1", "-a", listen.Address.ToString(), "-d", documentRoot, listen.Port.ToString(System.Globalization.CultureInfo.InvariantCulture)];

    /// <summary>"nghttpd 1.52.0" from <c>nghttpd --version</c> ("nghttpd nghttp2/1.52.0").</summary>
    public static async Task<string> ReadVersionAsync(string executable, CancellationToken cancellationToken)
    {
        var result = await ProcessRunner.RunAsync(executable, ["--version"], TimeSpan.FromSeconds(10), cancellationToken);
        var line = result.RecentOutput.Split('\n', StringSplitOptions.RemoveEmptyEntries).FirstOrDefault() ?? "nghttpd";
        var slash = line.LastIndexOf('/');
        return slash >= 0 ? $"nghttpd {line[(slash + 1)..].Trim()}" : line.Trim();
    }

    public void Launch(PeerConfig config)
    {
        if (_process is not null)
        {
            throw new InvalidOperationException("direct (nghttpd) is already running");
        }

        if (config.Protocol != ProxyProtocol.Http2)
        {
            throw new NotSupportedException($"nghttpd serves h2c only, not {config.Protocol}");
        }

        var root = Directory.CreateDirectory(Path.Combine(_workDirectory, "htdocs")).FullName;
        File.WriteAllText(Path.Combine(root, "index.html"), NginxBackend.Body);
        _listen = FreePorts.Next();
        _process = ChildProcess.Start(Name, _executable, BuildArguments(_listen, root));
    }

    public async Task<TimeSpan> WaitReadyAsync(TimeSpan timeout, CancellationToken cancellationToken)
    {
        var process = _process ?? throw new InvalidOperationException("direct (nghttpd) not launched");
        var started = Stopwatch.GetTimestamp();
        while (true)
        {
            if (process.HasExited)
            {
                throw new E2eException($"nghttpd exited before it listened: {await process.DescribeExitAsync()}");
            }

            try
            {
                using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                using var attempt = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                attempt.CancelAfter(TimeSpan.FromSeconds(1));
                await socket.ConnectAsync(_listen!, attempt.Token);
                return Stopwatch.GetElapsedTime(process.StartTimestamp);
            }
            catch (Exception ex) when (ex is SocketException or OperationCanceledException && !cancellationToken.IsCancellationRequested)
            {
                if (Stopwatch.GetElapsedTime(started) > timeout)
                {
                    throw new E2eException($"nghttpd did not listen on {_listen} within {timeout.TotalSeconds:0} s");
                }

                await Task.Delay(50, cancellationToken);
            }
        }
    }

    public async Task StopAsync()
    {
        var process = _process;
        _process = null;
        if (process is not null)
        {
            await process.DisposeAsync();
        }
    }

    public async ValueTask DisposeAsync() => await StopAsync();
}
