using System.Buffers;
using System.IO.Pipelines;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging;
using Proxy.Http.Forwarding;

namespace Proxy.Http.Http2.Server;

/// <summary>
/// Serves HTTP/2 client connections (h2c with prior knowledge) of one listener: one instance per listener,
/// immutable, shared by all its connections. Requests are forwarded by <see cref="Forwarder"/> (routing, split,
/// balancing, pools, proxy-made answers, telemetry) over per-connection lanes; see README.md in this folder.
/// </summary>
public sealed class Http2Server
{
    public Http2Server(Http1Forwarder forwarder, Http2ServerOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(forwarder);
        options ??= new Http2ServerOptions();
        var errors = options.Validate();
        if (errors.Count != 0)
        {
            throw new ArgumentException(string.Join(" ", errors), nameof(options));
        }

        Forwarder = forwarder;
        Options = options;
        Logger = forwarder.Options.LoggerFactory?.CreateLogger<Http2Server>() ?? (ILogger)Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance;
    }

    public Http1Forwarder Forwarder { get; }

    public Http2ServerOptions Options { get; }

    internal ILogger Logger { get; }

    /// <summary>
    /// Blocks of the lanes' pipes: pooled without a per-rent allocation (the shared array pool's wrapper objects and
    /// its per-core caches churned under many concurrent streams).
    /// </summary>
    internal Proxy.Core.Transport.PinnedBlockMemoryPool LanePool { get; } = new(4096);

    private long _streamObjectsCreated;

    /// <summary>Stream objects this server's connections created; every other stream reused the object of an ended one (for tests).</summary>
    internal long StreamObjectsCreated => Interlocked.Read(ref _streamObjectsCreated);

    /// <summary>Counts a new stream object (not on the steady-state path: objects are reused).</summary>
    internal void OnStreamObjectCreated() => Interlocked.Increment(ref _streamObjectsCreated);

    /// <summary>
    /// Whether the client's first bytes are the HTTP/2 preface (h2c with prior knowledge), reading no further than
    /// needed to tell and consuming nothing: the next read returns the same bytes. False when the client closes first.
    /// </summary>
    public static async ValueTask<bool> StartsWithPrefaceAsync(PipeReader input, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(input);
        while (true)
        {
            var result = await input.ReadAsync(cancellationToken).ConfigureAwait(false);
            var buffer = result.Buffer;
            var match = MatchPreface(buffer);
            if (match != 0)
            {
                // Decided without examining further: the next read returns the same bytes at once.
                input.AdvanceTo(buffer.Start);
                return match > 0;
            }

            input.AdvanceTo(buffer.Start, buffer.End);
            if (result.IsCompleted || result.IsCanceled)
            {
                return false;
            }
        }
    }

    /// <summary>1: the buffer starts with the whole preface; -1: it cannot be the preface; 0: a prefix of it so far.</summary>
    internal static int MatchPreface(in ReadOnlySequence<byte> buffer)
    {
        var preface = Http2Constants.ClientPreface;
        var length = (int)Math.Min(buffer.Length, preface.Length);
        Span<byte> head = stackalloc byte[preface.Length];
        buffer.Slice(0, length).CopyTo(head);
        if (!head[..length].SequenceEqual(preface[..length]))
        {
            return -1;
        }

        return length == preface.Length ? 1 : 0;
    }

    /// <summary>
    /// Serves <paramref name="connection"/> (its input starts with the client preface) until the client closes it,
    /// a connection error ends it (GOAWAY with the RFC 9113 code) or <paramref name="cancellationToken"/> fires.
    /// Never throws for network or protocol failures; the caller disposes the connection.
    /// </summary>
    public async Task HandleAsync(ConnectionContext connection, Http1Routing routing, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(connection);
        ArgumentNullException.ThrowIfNull(routing);
        using var session = new Http2ServerSession(this, connection, routing, cancellationToken);
        await session.RunAsync().ConfigureAwait(false);
    }
}
