using System.Net;
using Proxy.Bench.E2e.Infrastructure;

namespace Proxy.Bench.E2e.Peers;

/// <summary>No proxy: the client connects straight to the target. The baseline of every table.</summary>
internal sealed class DirectPeer : IPeer
{
    private IPEndPoint? _target;

    public string Name => "direct";

    public string Description => "no proxy: client -> target";

    public ChildProcess? Process => null;

    public IPEndPoint ListenEndPoint => _target ?? throw new InvalidOperationException("not launched");

    public void Launch(PeerConfig config) => _target = config.Upstream;

    public Task<TimeSpan> WaitReadyAsync(TimeSpan timeout, CancellationToken cancellationToken) => Task.FromResult(TimeSpan.Zero);

    public Task StopAsync() => Task.CompletedTask;

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}
