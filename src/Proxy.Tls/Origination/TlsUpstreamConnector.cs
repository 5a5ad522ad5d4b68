using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Proxy.Core.Addresses;
using Proxy.Core.Metrics;
using Proxy.Core.Upstream;
using Proxy.Tls.Connections;
using Proxy.Tls.Termination;

namespace Proxy.Tls.Origination;

/// <summary>
/// TLS origination as a connector: dials through the plain connector it wraps, then handshakes as a client and hands
/// back the decrypted <see cref="TlsConnection"/>. One instance per service TLS configuration (and upstream protocol,
/// which decides the ALPN offered); the pools built on it hold only its connections, so a TLS and a plaintext
/// service on the same endpoint never share one.
/// <list type="number">
/// <item>Connect (failures of the TCP connect are returned unchanged).</item>
/// <item>Handshake within <see cref="TlsClientOptions.HandshakeTimeout"/>: SNI and name check per
/// <see cref="TlsClientOptions.ServerName"/> (else the endpoint's IP), trust per
/// <see cref="TlsClientOptions.TrustedAuthorities"/> (else the system store), ALPN and client certificate from the
/// options (the certificate read from its source per handshake).</item>
/// <item>Failure: <see cref="ConnectFailureCause.Tls"/> with a detail saying why ("certificate not trusted (...)",
/// "the certificate does not match the name ...", "no handshake within ..."), counted in
/// <c>proxy_tls_handshakes_total{role=client}</c>; the raw connection is reset.</item>
/// </list>
/// </summary>
public sealed partial class TlsUpstreamConnector : IUpstreamConnector
{
    private readonly IUpstreamConnector _inner;
    private readonly TlsClientOptions _options;
    private readonly string _service;
    private readonly ProxyMetrics? _metrics;
    private readonly ILogger _logger;
    private readonly List<SslApplicationProtocol>? _alpn;
    private readonly X509ChainPolicy? _chainPolicy;

    public TlsUpstreamConnector(IUpstreamConnector inner, TlsClientOptions options, string service, ProxyMetrics? metrics = null, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(inner);
        ArgumentNullException.ThrowIfNull(options);
        _inner = inner;
        _options = options;
        _service = service;
        _metrics = metrics;
        _logger = logger ?? NullLogger.Instance;
        _alpn = options.ApplicationProtocols.Count == 0 ? null : [.. options.ApplicationProtocols];
        if (options.TrustedAuthorities is { Count: > 0 } roots)
        {
            _chainPolicy = new X509ChainPolicy { TrustMode = X509ChainTrustMode.CustomRootTrust, RevocationMode = X509RevocationMode.NoCheck };
            _chainPolicy.CustomTrustStore.AddRange(roots);
        }
    }

    public TlsClientOptions Options => _options;

    public async ValueTask<UpstreamConnectResult> TryConnectAsync(UpstreamAddress destination, CancellationToken cancellationToken)
    {
        var connect = await _inner.TryConnectAsync(destination, cancellationToken).ConfigureAwait(false);
        if (!connect.IsSuccess)
        {
            return connect;
        }

        var raw = connect.Connection!;
        var validation = new Validation(this);
        var stream = new SslStream(new DuplexPipeStream(raw.Transport), leaveInnerStreamOpen: false);
        var targetHost = _options.ServerName ?? destination.EndPoint.Address.ToString();
        var sslOptions = new SslClientAuthenticationOptions
        {
            TargetHost = targetHost,
            ApplicationProtocols = _alpn,
            EnabledSslProtocols = _options.EnabledProtocols,
            CertificateChainPolicy = _options.PeerTrust is null ? _chainPolicy : null,
            CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
            ClientCertificateContext = _options.ClientCertificate?.Current,
            RemoteCertificateValidationCallback = validation.Callback,
            AllowRenegotiation = false,
        };

        using var timeout = _options.HandshakeTimeout == Timeout.InfiniteTimeSpan ? null : new CancellationTokenSource(_options.HandshakeTimeout);
        using var linked = timeout is null ? null : CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
        string result;
        string detail;
        try
        {
            await stream.AuthenticateAsClientAsync(sslOptions, linked?.Token ?? cancellationToken).ConfigureAwait(false);
            Count("ok");
            return UpstreamConnectResult.Success(new TlsConnection(raw, stream, new TlsConnectionInfo(stream, TlsRole.Client), _options.Pipes));
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            await CloseAsync(raw, stream).ConfigureAwait(false);
            throw;
        }
        catch (OperationCanceledException)
        {
            result = "timeout";
            detail = $"no complete handshake within {_options.HandshakeTimeout.TotalMilliseconds:0} ms";
        }
        catch (Exception e) when (e is AuthenticationException or IOException or NotSupportedException or ObjectDisposedException or InvalidOperationException)
        {
            result = validation.Result ?? "failed";
            detail = validation.Detail ?? Describe(e);
        }

        await CloseAsync(raw, stream).ConfigureAwait(false);
        Count(result);
        var failure = new ConnectFailure(destination, ConnectFailureCause.Tls, detail);
        Log.HandshakeFailed(_logger, destination, _service, result, detail);
        return UpstreamConnectResult.Failed(failure);
    }

    private static async ValueTask CloseAsync(Microsoft.AspNetCore.Connections.ConnectionContext raw, SslStream stream)
    {
        await stream.DisposeAsync().ConfigureAwait(false);
        raw.Abort();
        await raw.DisposeAsync().ConfigureAwait(false);
    }

    private static string Describe(Exception e)
        => e.InnerException is { } inner && inner.Message.Length > 0 ? $"{e.Message} ({inner.Message})" : e.Message;

    private void Count(string result)
    {
        _metrics?.TlsHandshakes.Add(
            1,
            new KeyValuePair<string, object?>("listener", ""),
            new KeyValuePair<string, object?>("service", _service),
            new KeyValuePair<string, object?>("role", "client"),
            new KeyValuePair<string, object?>("result", result));
    }

    /// <summary>Per-handshake: checks the endpoint's certificate and remembers why it was refused.</summary>
    private sealed class Validation(TlsUpstreamConnector owner)
    {
        public string? Result;
        public string? Detail;

        public bool Callback(object sender, X509Certificate? certificate, X509Chain? chain, SslPolicyErrors errors)
        {
            if (owner._options.PeerTrust is { } trust)
            {
                var verification = trust.Current.Verify(certificate, chain, Identity.PeerRole.Server, owner._options.ExpectedPeer);
                if (verification.IsValid)
                {
                    return true;
                }

                Result = Identity.PeerVerificationErrors.Code(verification.Error);
                Detail = $"the peer sidecar was refused: {verification.Reason}";
                return false;
            }

            if (owner._options.InsecureSkipVerify || errors == SslPolicyErrors.None)
            {
                return true;
            }

            var target = ((SslStream)sender).TargetHostName;
            if ((errors & SslPolicyErrors.RemoteCertificateNotAvailable) != 0)
            {
                Result = "failed";
                Detail = "the endpoint presented no certificate";
            }
            else if ((errors & SslPolicyErrors.RemoteCertificateChainErrors) != 0)
            {
                Result = "untrusted";
                Detail = $"certificate not trusted: {certificate?.Subject}: {TlsTerminator.ChainProblems(chain, errors)}";
            }
            else
            {
                Result = "name_mismatch";
                Detail = $"name mismatch: the certificate {certificate?.Subject} is not valid for \"{target}\"";
            }

            return false;
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 4201, Level = LogLevel.Debug, Message = "TLS handshake with {Destination} (service {Service}) failed ({Result}): {Detail}")]
        public static partial void HandshakeFailed(ILogger logger, UpstreamAddress destination, string service, string result, string detail);
    }
}
