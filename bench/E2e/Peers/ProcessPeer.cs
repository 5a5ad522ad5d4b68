using System.Net;
using Proxy.Bench.E2e.Infrastructure;

namespace Proxy.Bench.E2e.Peers;

/// <summary>Shared lifecycle of peers that are one process with an HTTP readiness endpoint.</summary>
internal abstract class ProcessPeer : IPeer
{
    private ChildProcess? _process;
    private IPEndPoint? _listen;
    private IPEndPoint? _ready;

    protected ProcessPeer(string workDirectory) => WorkDirectory = workDirectory;

    public abstract string Name { get; }

    public abstract string Description { get; }

    public ChildProcess? Process => _process;

    public IPEndPoint ListenEndPoint => _listen ?? throw new InvalidOperationException($"{Name} not launched");

    /// <summary>Where the readiness endpoint listens (the admin listener for the sidecar); valid after launch.</summary>
    public IPEndPoint ReadyEndPoint => _ready ?? throw new InvalidOperationException($"{Name} not launched");

    protected string WorkDirectory { get; }

    /// <summary>The configuration of the current (or last) launch; null before the first.</summary>
    protected PeerConfig? Config { get; private set; }

    /// <summary>Path polled for 200 on the readiness endpoint.</summary>
    protected virtual string ReadyPath => "/ready";

    public void Launch(PeerConfig config)
    {
        if (_process is not null)
        {
            throw new InvalidOperationException($"{Name} is already running");
        }

        Config = config;
        _listen = FreePorts.Next();
        _ready = FreePorts.Next();
        _process = StartProcess(config, _listen, _ready);
    }

    public Task<TimeSpan> WaitReadyAsync(TimeSpan timeout, CancellationToken cancellationToken)
    {
        var process = _process ?? throw new InvalidOperationException($"{Name} not launched");
        return Probes.WaitForHttp200Async(_ready!, ReadyPath, process.StartTimestamp, process, timeout, cancellationToken);
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

    /// <summary>Writes configuration files as needed and starts the process.</summary>
    protected abstract ChildProcess StartProcess(PeerConfig config, IPEndPoint listen, IPEndPoint ready);
}
