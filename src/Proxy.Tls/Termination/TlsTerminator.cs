using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Proxy.Core.Metrics;
using Proxy.Tls.Connections;

namespace Proxy.Tls.Termination;

/// <summary>
/// The server TLS stage of a listener: runs the handshake on a raw connection and hands back the decrypted one.
/// <list type="number">
/// <item>Wrap the raw connection's pipes in a stream and an <see cref="SslStream"/>.</item>
/// <item>Handshake within <see cref="TlsServerOptions.HandshakeTimeout"/>: the certificate is chosen per client hello
/// (by SNI through <see cref="TlsServerOptions.CertificateSelector"/>, else <see cref="TlsServerOptions.Certificate"/>),
/// read from its source per handshake (so a reloaded file applies to new connections); ALPN from the options;
/// client certificates per <see cref="TlsServerOptions.ClientCertificateMode"/>.</item>
/// <item>Success: a <see cref="TlsConnection"/> whose <see cref="TlsConnection.Info"/> says what ALPN chose; the
/// caller dispatches on it (h2 to the HTTP/2 server, else HTTP/1.1 or opaque TCP).</item>
/// <item>Failure (or the connection closing mid-handshake, result <c>closed</c>): the raw connection is aborted (reset), the reason logged at debug, and the handshake counted in
/// <c>proxy_tls_handshakes_total{listener, role=server, result}</c>; null is returned.</item>
/// </list>
/// Session resumption is what SslStream offers on the platform (see the project README).
/// </summary>
public sealed partial class TlsTerminator
{
    private readonly string _listener;
    private readonly TlsServerOptions _options;
    private readonly ProxyMetrics? _metrics;
    private readonly ILogger _logger;
    private readonly List<SslApplicationProtocol> _alpn;
    private readonly X509ChainPolicy? _clientChainPolicy;

    public TlsTerminator(string listener, TlsServerOptions options, ProxyMetrics? metrics = null, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.Certificate is null && options.CertificateSelector is null)
        {
            throw new ArgumentException("A TLS listener needs a certificate or a certificate selector.", nameof(options));
        }

        _listener = listener;
        _options = options;
        _metrics = metrics;
        _logger = logger ?? NullLogger.Instance;
        _alpn = [.. options.ApplicationProtocols];
        if (options.ClientCertificateAuthorities is { Count: > 0 } roots)
        {
            _clientChainPolicy = new X509ChainPolicy
            {
                TrustMode = X509ChainTrustMode.CustomRootTrust,
                RevocationMode = X509RevocationMode.NoCheck,
            };
            _clientChainPolicy.CustomTrustStore.AddRange(roots);
        }
    }

    public TlsServerOptions Options => _options;

    /// <summary>
    /// Handshakes on <paramref name="connection"/>. Returns the decrypted connection (dispose it when done: that
    /// closes the SslStream and the raw connection), or null when the handshake failed or
    /// <paramref name="cancellationToken"/> (typically the connection's ConnectionClosed) fired: the raw connection is
    /// aborted then, the result counted and logged. Never throws for network causes.
    /// </summary>
    public async ValueTask<TlsConnection?> TerminateAsync(ConnectionContext connection, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(connection);
        var state = new Handshake(this);
        var stream = new SslStream(new DuplexPipeStream(connection.Transport), leaveInnerStreamOpen: false);
        using var timeout = _options.HandshakeTimeout == Timeout.InfiniteTimeSpan ? null : new CancellationTokenSource(_options.HandshakeTimeout);
        using var linked = timeout is null ? null : CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
        string result;
        string reason;
        try
        {
            await stream.AuthenticateAsServerAsync(static (s, hello, st, ct) => ((Handshake)st!).SelectOptions(hello), state, linked?.Token ?? cancellationToken).ConfigureAwait(false);
            var info = new TlsConnectionInfo(stream, TlsRole.Server);
            Count("ok");
            if (_logger.IsEnabled(LogLevel.Trace))
            {
                Log.Established(_logger, _listener, connection.RemoteEndPoint, info.Protocol, info.ApplicationProtocol, info.ServerName);
            }

            return new TlsConnection(connection, stream, info, _options.Pipes);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // The listener passes the connection's ConnectionClosed: the client went away (or the proxy is stopping).
            result = "closed";
            reason = "the connection closed during the handshake";
        }
        catch (OperationCanceledException)
        {
            result = "timeout";
            reason = $"no complete handshake within {_options.HandshakeTimeout.TotalMilliseconds:0} ms";
        }
        catch (Exception e) when (e is AuthenticationException or IOException or NotSupportedException or ObjectDisposedException or InvalidOperationException)
        {
            result = state.Failure ?? "failed";
            reason = state.FailureReason ?? Describe(e);
        }

        await stream.DisposeAsync().ConfigureAwait(false);
        Count(result);
        Log.HandshakeFailed(_logger, _listener, connection.RemoteEndPoint, result, reason);
        connection.Abort(new ConnectionAbortedException($"TLS handshake failed: {reason}"));
        return null;
    }

    private static string Describe(Exception e)
        => e.InnerException is { } inner && inner.Message.Length > 0 ? $"{e.Message} ({inner.Message})" : e.Message;

    private void Count(string result)
    {
        if (_metrics is null)
        {
            return;
        }

        _metrics.TlsHandshakes.Add(
            1,
            new KeyValuePair<string, object?>("listener", _listener),
            new KeyValuePair<string, object?>("service", ""),
            new KeyValuePair<string, object?>("role", "server"),
            new KeyValuePair<string, object?>("result", result));
    }

    /// <summary>Per-handshake state: the options chosen for this client hello, and why the handshake failed when we refused it.</summary>
    private sealed class Handshake(TlsTerminator owner)
    {
        public string? Failure;
        public string? FailureReason;

        public ValueTask<SslServerAuthenticationOptions> SelectOptions(SslClientHelloInfo hello)
        {
            var o = owner._options;
            var serverName = string.IsNullOrEmpty(hello.ServerName) ? null : hello.ServerName;
            var source = o.CertificateSelector?.Invoke(serverName) ?? o.Certificate;
            if (source is null)
            {
                Failure = "no_certificate";
                FailureReason = $"no certificate for the server name \"{serverName ?? "(none sent)"}\"";
                throw new AuthenticationException(FailureReason);
            }

            var mode = o.PeerTrust is null ? o.ClientCertificateMode : ClientCertificateMode.Required;
            var options = new SslServerAuthenticationOptions
            {
                ServerCertificateContext = source.Current,
                ApplicationProtocols = owner._alpn.Count == 0 ? null : owner._alpn,
                EnabledSslProtocols = o.EnabledProtocols,
                ClientCertificateRequired = mode != ClientCertificateMode.None,
                CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
                AllowRenegotiation = false,
            };
            if (o.PeerTrust is { } trust)
            {
                // The trust is read once per handshake: a reloaded bundle applies to new connections.
                var current = trust.Current;
                options.RemoteCertificateValidationCallback = (_, certificate, chain, _) => ValidateMesh(current, certificate, chain);
            }
            else if (mode != ClientCertificateMode.None)
            {
                options.CertificateChainPolicy = owner._clientChainPolicy;
                options.RemoteCertificateValidationCallback = (_, certificate, chain, errors) => Validate(certificate as X509Certificate2, chain, errors);
            }

            return ValueTask.FromResult(options);
        }

        private bool ValidateMesh(Identity.MeshTrust trust, X509Certificate? certificate, X509Chain? chain)
        {
            var result = trust.Verify(certificate, chain, Identity.PeerRole.Client);
            if (result.IsValid)
            {
                return true;
            }

            Failure = Identity.PeerVerificationErrors.Code(result.Error);
            FailureReason = result.Reason;
            return false;
        }

        private bool Validate(X509Certificate2? certificate, X509Chain? chain, SslPolicyErrors errors)
        {
            var o = owner._options;
            errors &= ~SslPolicyErrors.RemoteCertificateNameMismatch;
            if (o.ClientCertificateValidator is { } custom)
            {
                if (custom(certificate, chain, errors))
                {
                    return true;
                }

                Failure = certificate is null ? "client_certificate_missing" : "client_certificate_rejected";
                FailureReason = certificate is null ? "the client sent no certificate" : $"the client certificate {certificate.Subject} was refused by the validator";
                return false;
            }

            if (certificate is null)
            {
                if (o.ClientCertificateMode == ClientCertificateMode.Optional)
                {
                    return true;
                }

                Failure = "client_certificate_missing";
                FailureReason = "the client sent no certificate, and this listener requires one";
                return false;
            }

            if (errors == SslPolicyErrors.None)
            {
                return true;
            }

            Failure = "client_certificate_rejected";
            FailureReason = $"the client certificate {certificate.Subject} is not valid: {ChainProblems(chain, errors)}";
            return false;
        }
    }

    internal static string ChainProblems(X509Chain? chain, SslPolicyErrors errors)
    {
        if (chain is not null && chain.ChainStatus.Length > 0)
        {
            return string.Join("; ", chain.ChainStatus.Select(static s => s.StatusInformation.Trim()).Where(static s => s.Length > 0).Distinct());
        }

        return errors.ToString();
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 4101, Level = LogLevel.Debug, Message = "Listener {Listener}: TLS handshake with {Client} failed ({Result}): {Reason}")]
        public static partial void HandshakeFailed(ILogger logger, string listener, System.Net.EndPoint? client, string result, string reason);

        [LoggerMessage(EventId = 4102, Level = LogLevel.Trace, Message = "Listener {Listener}: TLS with {Client} established: {Protocol}, ALPN {Alpn}, SNI {ServerName}")]
        public static partial void Established(ILogger logger, string listener, System.Net.EndPoint? client, SslProtocols protocol, SslApplicationProtocol alpn, string? serverName);
    }
}
