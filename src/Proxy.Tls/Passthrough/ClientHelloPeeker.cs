using System.Buffers;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using Proxy.Core.Detection;
using Proxy.Tls.ClientHello;

namespace Proxy.Tls.Passthrough;

/// <summary>How a <see cref="ClientHelloPeeker.PeekAsync"/> ended.</summary>
public enum ClientHelloPeekOutcome : byte
{
    /// <summary>A complete, valid ClientHello (SNI, ALPN flags and version in the result).</summary>
    Parsed,

    /// <summary>The first bytes are not a TLS handshake record carrying a ClientHello.</summary>
    NotTls,

    /// <summary>A malformed ClientHello (<see cref="ClientHelloPeekResult.Error"/> says why).</summary>
    Invalid,

    /// <summary>The ClientHello was still incomplete at the deadline.</summary>
    TimedOut,

    /// <summary>The client closed before its ClientHello was complete.</summary>
    ClientClosed,

    /// <summary>The socket failed while peeking.</summary>
    Failed,
}

/// <summary>
/// What the listener learns from a peeked ClientHello. <see cref="ServerName"/> is the one allocation per connection
/// (a lower-cased string, kept for routing and logs); ALPN is summarised as flags (h2, http/1.1) rather than copied.
/// </summary>
public readonly record struct ClientHelloPeekResult(
    ClientHelloPeekOutcome Outcome,
    ClientHelloError Error,
    string? ServerName,
    ClientHelloFlags Flags,
    ushort MaxVersion,
    int BytesPeeked)
{
    /// <summary>The mesh protocol the ClientHello's ALPN offers (<see cref="Mesh.MeshAlpn"/>): None for any other TLS client.</summary>
    public Mesh.MeshInnerProtocol MeshProtocol { get; init; }

    /// <summary>Short text for logs and metric tags: parsed, not_tls, timeout, client_closed, failed, or the parse error.</summary>
    public string Describe() => Outcome switch
    {
        ClientHelloPeekOutcome.Parsed => "parsed",
        ClientHelloPeekOutcome.NotTls => "not_tls",
        ClientHelloPeekOutcome.TimedOut => "timeout",
        ClientHelloPeekOutcome.ClientClosed => "client_closed",
        ClientHelloPeekOutcome.Failed => "failed",
        _ => ClientHelloErrors.Describe(Error),
    };
}

/// <summary>
/// The second peek step for TLS connections: after protocol detection (Proxy.Core) saw a TLS record header, waits for
/// the whole ClientHello in the socket's receive queue (never consuming it) and parses it with
/// <see cref="ClientHelloParser"/>. Proxy.Core cannot reference Proxy.Tls, so this lives here and peeks again through
/// Core's <see cref="SocketPeeker"/>; the Sidecar calls it after the detector (captured listeners) or directly
/// (explicit TLS passthrough listeners).
/// <code>
///   peek ≥ 5 bytes ─ parse ─┬─ Parsed / NotTls / Invalid ─► done
///                           └─ Incomplete(BytesNeeded) ─ wait until that many bytes are queued (SO_RCVLOWAT) ─ peek again
///   deadline ─► TimedOut     FIN ─► ClientClosed
/// </code>
/// Each step needs strictly more bytes than the last, and at most <see cref="ClientHelloParser.MaxWireLength"/>, so the
/// loop is bounded. Memory: one pooled buffer (wire bytes + reassembly scratch) per peek, returned before it completes.
/// </summary>
public sealed class ClientHelloPeeker(SocketPeeker peeker)
{
    private const int BufferLength = ClientHelloParser.MaxWireLength + ClientHelloParser.MaxMessageLength;

    public ClientHelloPeeker()
        : this(SocketPeeker.Shared)
    {
    }

    /// <summary>Peeks and parses the ClientHello of <paramref name="socket"/>. Never throws for socket errors or bad input.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<ClientHelloPeekResult> PeekAsync(Socket socket, long deadlineMs, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(socket);
        var buffer = ArrayPool<byte>.Shared.Rent(BufferLength);
        try
        {
            var need = 5 + 4; // a record header and the handshake header
            while (true)
            {
                var peek = await peeker.PeekAsync(socket, buffer.AsMemory(0, ClientHelloParser.MaxWireLength), need, deadlineMs, cancellationToken).ConfigureAwait(false);
                if (peek.Outcome == PeekOutcome.Failed)
                {
                    return new ClientHelloPeekResult(ClientHelloPeekOutcome.Failed, ClientHelloError.None, null, ClientHelloFlags.None, 0, 0);
                }

                if (TryParse(buffer, peek.BytesPeeked, out var result, out var needed))
                {
                    return result;
                }

                if (needed <= peek.BytesPeeked || needed > ClientHelloParser.MaxWireLength)
                {
                    // Cannot happen (the parser promises BytesPeeked < needed <= MaxWireLength); never spin on it.
                    return new ClientHelloPeekResult(ClientHelloPeekOutcome.Invalid, ClientHelloError.Oversize, null, ClientHelloFlags.None, 0, peek.BytesPeeked);
                }

                if (peek.Outcome != PeekOutcome.Enough)
                {
                    var outcome = peek.Outcome == PeekOutcome.ClientClosed ? ClientHelloPeekOutcome.ClientClosed : ClientHelloPeekOutcome.TimedOut;
                    return new ClientHelloPeekResult(outcome, ClientHelloError.None, null, ClientHelloFlags.None, 0, peek.BytesPeeked);
                }

                need = needed;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>Parses what was peeked (synchronous: the parsed view is a ref struct and cannot cross an await).</summary>
    /// <returns>False when the ClientHello is incomplete; <paramref name="needed"/> then says how many bytes to wait for.</returns>
    private static bool TryParse(byte[] buffer, int peeked, out ClientHelloPeekResult peekResult, out int needed)
    {
        needed = 0;
        var wire = buffer.AsSpan(0, peeked);
        var scratch = buffer.AsSpan(ClientHelloParser.MaxWireLength);
        var result = ClientHelloParser.TryParse(wire, scratch, out var hello);
        switch (result.Status)
        {
            case ClientHelloStatus.Parsed:
                peekResult = new ClientHelloPeekResult(ClientHelloPeekOutcome.Parsed, ClientHelloError.None, hello.GetServerName(), hello.Flags, hello.MaxVersion, peeked)
                {
                    MeshProtocol = Mesh.MeshAlpn.Offered(hello.AlpnProtocols),
                };
                return true;
            case ClientHelloStatus.Invalid:
                var outcome = result.Error is ClientHelloError.NotHandshake or ClientHelloError.NotClientHello or ClientHelloError.BadRecordVersion
                    ? ClientHelloPeekOutcome.NotTls
                    : ClientHelloPeekOutcome.Invalid;
                peekResult = new ClientHelloPeekResult(outcome, result.Error, null, ClientHelloFlags.None, 0, peeked);
                return true;
            default:
                needed = result.BytesNeeded;
                peekResult = default;
                return false;
        }
    }
}
