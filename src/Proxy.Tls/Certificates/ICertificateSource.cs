using System.Net.Security;

namespace Proxy.Tls.Certificates;

/// <summary>
/// The certificate (with its intermediates) a TLS endpoint presents: a terminating listener's server certificate, or
/// the client certificate of an originating connection. Read once per handshake, so a source that reloads its files
/// changes what new handshakes present while established connections keep theirs.
/// </summary>
public interface ICertificateSource
{
    /// <summary>The certificate context to present now (never null once the source is constructed).</summary>
    SslStreamCertificateContext Current { get; }

    /// <summary>When <see cref="Current"/>'s leaf certificate expires (UTC).</summary>
    DateTimeOffset NotAfter { get; }
}
