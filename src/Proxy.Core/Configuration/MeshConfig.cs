namespace Proxy.Core.Configuration;

/// <summary>What an inbound port does with mesh mutual TLS (file key <c>mesh.mode</c>, per port <c>mesh.ports</c>).</summary>
public enum MeshMode
{
    /// <summary>No mesh TLS is terminated: every connection is handled as if the mesh did not exist (mesh TLS passes through to the app).</summary>
    Disable,

    /// <summary>Mesh mTLS from peer sidecars is terminated and verified; plaintext (and the app's own TLS) is accepted as well. For migration.</summary>
    Permissive,

    /// <summary>Only mesh mTLS is accepted; plaintext and non-mesh TLS are refused (connection reset, logged, counted).</summary>
    Strict,
}

/// <summary>
/// The sidecar's mesh identity and how it uses it; file section <c>mesh</c>. Off (<see cref="Enabled"/> false) until
/// <see cref="CertificatePath"/>, <see cref="KeyPath"/> and <see cref="TrustBundlePath"/> are all given.
/// <list type="bullet">
/// <item>Outbound: connections and requests to services with <c>"mesh"</c> go over mutual TLS to the endpoint (the peer
/// sidecar's capture takes it to its inbound listener), presenting this workload certificate and verifying the peer's
/// chain to the trust bundle and its SPIFFE ID; ALPN carries the inner protocol.</item>
/// <item>Inbound: the inbound capture listener (and explicit listeners with <c>"mesh"</c>) terminate mesh mTLS by that
/// ALPN, verify the client's chain and identity, and forward plaintext to the app; plaintext per <see cref="ModeFor"/>.</item>
/// </list>
/// </summary>
public sealed record MeshConfig
{
    /// <summary>Key <c>certificate</c> (flag <c>--mesh-certificate</c>): the workload certificate chain (PEM, leaf first) with its SPIFFE ID.</summary>
    public string? CertificatePath { get; init; }

    /// <summary>Key <c>key</c> (flag <c>--mesh-key</c>): the workload's private key (PEM).</summary>
    public string? KeyPath { get; init; }

    /// <summary>Key <c>trustBundle</c> (flag <c>--mesh-trust-bundle</c>): the mesh root CA certificates (PEM).</summary>
    public string? TrustBundlePath { get; init; }

    /// <summary>Key <c>mode</c> (flag <c>--mesh-mode</c>): the inbound mode of every port without its own entry in <see cref="Ports"/>.</summary>
    public MeshMode Mode { get; init; } = MeshMode.Permissive;

    /// <summary>Key <c>ports</c>: inbound modes by the port the client dialled (the app's port), e.g. <c>{ "8080": "strict" }</c>.</summary>
    public IReadOnlyDictionary<int, MeshMode> Ports { get; init; } = new Dictionary<int, MeshMode>();

    /// <summary>
    /// Key <c>http2</c> (flag <c>--mesh-http2</c>): HTTP/1.1 requests to meshed services travel as HTTP/2 streams between the
    /// sidecars (multiplexed over few connections) and reach the app as HTTP/1.1 again. False: HTTP/1.1 stays HTTP/1.1.
    /// </summary>
    public bool Http2 { get; init; } = true;

    /// <summary>The mesh is on: the sidecar has a workload identity and a trust bundle.</summary>
    public bool Enabled => CertificatePath is not null && KeyPath is not null && TrustBundlePath is not null;

    /// <summary>The inbound mode of a connection the client sent to <paramref name="port"/> (Disable when the mesh is off).</summary>
    public MeshMode ModeFor(int port)
        => !Enabled ? MeshMode.Disable : Ports.TryGetValue(port, out var mode) ? mode : Mode;

    /// <summary>The config/flag spelling of a mode.</summary>
    public static string Name(MeshMode mode) => mode switch
    {
        MeshMode.Strict => "strict",
        MeshMode.Permissive => "permissive",
        _ => "disable",
    };

    /// <summary>Parses strict, permissive or disable; returns an error phrase or null.</summary>
    public static string? ParseMode(string text, out MeshMode mode)
    {
        (mode, var error) = text switch
        {
            "strict" => (MeshMode.Strict, null),
            "permissive" => (MeshMode.Permissive, null),
            "disable" => (MeshMode.Disable, (string?)null),
            _ => (MeshMode.Permissive, $"\"{text}\" is not one of strict, permissive, disable"),
        };
        return error;
    }
}

/// <summary>
/// A service's <c>mesh</c> key: its endpoints are meshed (each runs a sidecar of this mesh), so the proxy speaks mesh
/// mTLS to them. <c>true</c> accepts any identity the trust bundle vouches for; <c>{ "identity": "..." }</c> names the
/// identity (or pattern: <c>spiffe://td/ns/prod/*</c>) the endpoints must prove.
/// </summary>
public sealed record ServiceMeshConfig
{
    /// <summary>Key <c>identity</c>: the SPIFFE ID pattern the endpoint must present; "*" (default) is any identity of the mesh.</summary>
    public string Identity { get; init; } = "*";
}
