using System.Diagnostics;
using System.Net;
using Proxy.Bench.E2e.Infrastructure;

namespace Proxy.Bench.E2e.Peers;

/// <summary>One process of a two-hop peer: "hop1" (outbound, the client's side) or "hop2" (inbound, the backend's side).</summary>
internal sealed record MeshHop(string Name, ChildProcess Process, IPEndPoint Listen, IPEndPoint Ready);

/// <summary>
/// A peer of the two-hop mesh scenario: a PAIR of proxy processes.
/// <code>
///  client ──► hop 1 (ListenEndPoint) ──► hop 2 ──► backend (PeerConfig.Upstream)
/// </code>
/// Hop 2 starts first, then hop 1 pointed at hop 2. Ready means: both hops' readiness endpoints answer 200, then a
/// GET / through hop 1 answers 200 (the whole path, handshake between the hops included). <see cref="IPeer.Process"/> is
/// hop 1's process; <see cref="Hops"/> has both, for CPU and memory figures per hop.
/// </summary>
internal abstract class MeshPairPeer : IPeer
{
    private MeshHop? _hop1;
    private MeshHop? _hop2;

    protected MeshPairPeer(string workDirectory) => WorkDirectory = workDirectory;

    public abstract string Name { get; }

    public abstract string Description { get; }

    public ChildProcess? Process => _hop1?.Process;

    public IPEndPoint ListenEndPoint => _hop1?.Listen ?? throw new InvalidOperationException($"{Name} not launched");

    /// <summary>Hop 1 then hop 2 while running; empty before launch and after stop.</summary>
    public IReadOnlyList<MeshHop> Hops => _hop1 is null || _hop2 is null ? [] : [_hop1, _hop2];

    protected string WorkDirectory { get; }

    /// <summary>Path polled for 200 on each hop's readiness endpoint.</summary>
    protected virtual string ReadyPath => "/ready";

    public void Launch(PeerConfig config)
    {
        if (_hop1 is not null || _hop2 is not null)
        {
            throw new InvalidOperationException($"{Name} is already running");
        }

        if (config.Protocol != ProxyProtocol.Http1)
        {
            throw new NotSupportedException($"{Name}: the mesh peers forward HTTP/1.1 only");
        }

        var listen2 = FreePorts.Next();
        var ready2 = FreePorts.Next();
        _hop2 = new MeshHop("hop2", StartHop2(listen2, ready2, config.Upstream), listen2, ready2);
        var listen1 = FreePorts.Next();
        var ready1 = FreePorts.Next();
        try
        {
            _hop1 = new MeshHop("hop1", StartHop1(listen1, ready1, listen2), listen1, ready1);
        }
        catch
        {
            _hop2.Process.Kill();
            throw;
        }
    }

    public async Task<TimeSpan> WaitReadyAsync(TimeSpan timeout, CancellationToken cancellationToken)
    {
        var hop1 = _hop1 ?? throw new InvalidOperationException($"{Name} not launched");
        var hop2 = _hop2!;
        await Probes.WaitForHttp200Async(hop2.Ready, ReadyPath, hop2.Process.StartTimestamp, hop2.Process, timeout, cancellationToken);
        await Probes.WaitForHttp200Async(hop1.Ready, ReadyPath, hop1.Process.StartTimestamp, hop1.Process, timeout, cancellationToken);
        try
        {
            await Probes.WaitForHttp200Async(hop1.Listen, "/", hop1.Process.StartTimestamp, hop1.Process, timeout, cancellationToken);
        }
        catch (E2eException ex)
        {
            // The failure is often on hop 2's side (handshake refused, config rejected): show its output too.
            var hop2State = hop2.Process.HasExited ? await hop2.Process.DescribeExitAsync() : $"hop2 running; last output:\n{hop2.Process.RecentOutput}";
            throw new E2eException($"no 200 through both hops: {ex.Message}\n{hop2State}", ex);
        }

        return Stopwatch.GetElapsedTime(hop2.Process.StartTimestamp);
    }

    public async Task StopAsync()
    {
        var hops = new[] { _hop1, _hop2 };
        _hop1 = null;
        _hop2 = null;
        foreach (var hop in hops)
        {
            if (hop is not null)
            {
                await hop.Process.DisposeAsync();
            }
        }
    }

    public async ValueTask DisposeAsync() => await StopAsync();

    /// <summary>Writes hop 2's configuration and starts it: listens on <paramref name="listen"/>, forwards to <paramref name="backend"/>.</summary>
    protected abstract ChildProcess StartHop2(IPEndPoint listen, IPEndPoint ready, IPEndPoint backend);

    /// <summary>Writes hop 1's configuration and starts it: listens on <paramref name="listen"/>, forwards to hop 2 at <paramref name="hop2"/>.</summary>
    protected abstract ChildProcess StartHop1(IPEndPoint listen, IPEndPoint ready, IPEndPoint hop2);
}

/// <summary>
/// Two published sidecars (<c>--config</c> files from <see cref="MeshSidecarConfig"/>): plaintext between the hops
/// (<c>sidecar-plain</c>) or mesh mTLS (<c>sidecar-mtls</c>, with <see cref="MeshCertificates"/>). Readiness: each
/// hop's admin /ready.
/// </summary>
internal sealed class SidecarMeshPeer : MeshPairPeer
{
    private readonly SidecarBuild _build;
    private readonly IReadOnlyList<string> _extraArguments;
    private readonly MeshCertificates? _certificates;

    public SidecarMeshPeer(string name, SidecarBuild build, IReadOnlyList<string> extraArguments, MeshCertificates? certificates, string workDirectory)
        : base(workDirectory)
    {
        Name = name;
        _build = build;
        _extraArguments = extraArguments;
        _certificates = certificates;
    }

    public override string Name { get; }

    /// <summary>Mesh mTLS between the hops (sidecar-mtls), not plaintext.</summary>
    public bool Mtls => _certificates is not null;

    public override string Description =>
        $"two sidecars ({_build.Flavor}{(_extraArguments.Count == 0 ? string.Empty : ", " + string.Join(' ', _extraArguments))}), " +
        "listeners \"protocol\": \"http\"; " +
        (_certificates is null
            ? "plaintext HTTP between the hops (no \"mesh\" keys)"
            : $"mesh mTLS between the hops (top-level \"mesh\" certificate/key/trustBundle on both, hop 2 listener \"mesh\": \"strict\", hop 1 service \"mesh\": {{ \"identity\": \"{_certificates.Hop2.Identity}\" }})");

    protected override ChildProcess StartHop2(IPEndPoint listen, IPEndPoint ready, IPEndPoint backend) =>
        Start("hop2", MeshSidecarConfig.BuildHop2(ready, listen, backend, _certificates?.SidecarFiles(_certificates.Hop2)));

    protected override ChildProcess StartHop1(IPEndPoint listen, IPEndPoint ready, IPEndPoint hop2) =>
        Start("hop1", MeshSidecarConfig.BuildHop1(ready, listen, hop2, _certificates?.SidecarFiles(_certificates.Hop1), MeshCertificates.IdentityOf("hop2")));

    private ChildProcess Start(string hop, string config)
    {
        var path = Path.Combine(WorkDirectory, $"{hop}.json");
        File.WriteAllText(path, config);
        return ChildProcess.Start($"{Name}-{hop}", _build.ExecutablePath, ["--config", path, .. _extraArguments], environment: SidecarPeer.JitEnvironment(_build));
    }
}

/// <summary>
/// Two HAProxy processes (<c>-db</c>, configs from <see cref="MeshHaproxyConfig"/>): plaintext HTTP/1.1 between
/// the hops (<c>haproxy-plain</c>) or mutual TLS (<c>haproxy-tls</c>). Readiness: each hop's monitor-uri frontend.
/// </summary>
internal sealed class HaproxyMeshPeer : MeshPairPeer
{
    private readonly string _executable;
    private readonly string _version;
    private readonly MeshCertificates? _certificates;
    private readonly string _alpn;

    public HaproxyMeshPeer(string name, string executable, string version, MeshCertificates? certificates, string workDirectory, string alpn = "h2")
        : base(workDirectory)
    {
        Name = name;
        _executable = executable;
        _version = version;
        _certificates = certificates;
        _alpn = alpn;
    }

    public override string Name { get; }

    public override string Description =>
        $"two {_version} processes, mode http, nbthread 1, http-reuse always, keep-alive; " +
        (_certificates is null
            ? "plaintext HTTP/1.1 between the hops"
            : $"mutual TLS between the hops: hop 2 `bind ... ssl crt ca-file verify required alpn h2,http/1.1`, hop 1 `server ... ssl crt ca-file verify required alpn {_alpn}` (certificate chain verified against the mesh CA; no SPIFFE ID check)");

    protected override ChildProcess StartHop2(IPEndPoint listen, IPEndPoint ready, IPEndPoint backend) =>
        Start("hop2", MeshHaproxyConfig.BuildHop2(listen, ready, backend, _certificates?.HaproxyFiles(_certificates.Hop2)));

    protected override ChildProcess StartHop1(IPEndPoint listen, IPEndPoint ready, IPEndPoint hop2) =>
        Start("hop1", MeshHaproxyConfig.BuildHop1(listen, ready, hop2, _certificates?.HaproxyFiles(_certificates.Hop1), _alpn));

    private ChildProcess Start(string hop, string config)
    {
        var path = Path.Combine(WorkDirectory, $"{hop}.cfg");
        File.WriteAllText(path, config);
        return ChildProcess.Start($"{Name}-{hop}", _executable, ["-db", "-f", path]);
    }
}
