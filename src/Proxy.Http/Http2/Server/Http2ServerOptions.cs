namespace Proxy.Http.Http2.Server;

/// <summary>What the proxy advertises to, and tolerates from, HTTP/2 clients. Immutable.</summary>
public sealed record Http2ServerOptions
{
    /// <summary>SETTINGS_MAX_CONCURRENT_STREAMS; streams past it are refused (RST_STREAM REFUSED_STREAM). Default 100, like Envoy and nginx.</summary>
    public int MaxConcurrentStreams { get; init; } = 100;

    /// <summary>SETTINGS_INITIAL_WINDOW_SIZE: request body bytes a client may have in flight per stream. Default 256 KiB.</summary>
    public int InitialStreamWindowSize { get; init; } = 256 * 1024;

    /// <summary>Request body bytes a client may have in flight on the whole connection. Default 1 MiB.</summary>
    public int InitialConnectionWindowSize { get; init; } = 1024 * 1024;

    /// <summary>SETTINGS_HEADER_TABLE_SIZE for the client's encoder (our decoder's table). Default 4096.</summary>
    public int HeaderTableSize { get; init; } = 4096;

    /// <summary>SETTINGS_MAX_HEADER_LIST_SIZE and the decoder's hard limit (RFC 9113 §6.5.2 size). Default 64 KiB.</summary>
    public int MaxHeaderListSize { get; init; } = 64 * 1024;

    /// <summary>Compressed bytes one header block may span across CONTINUATION frames. Default 64 KiB.</summary>
    public int MaxHeaderBlockSize { get; init; } = 64 * 1024;

    /// <summary>
    /// Rapid-reset defence: streams the client resets (or that are refused) before their response ended, per
    /// <see cref="FloodWindow"/>; past it the connection ends with GOAWAY ENHANCE_YOUR_CALM. Default 200.
    /// </summary>
    public int MaxStreamResetsPerWindow { get; init; } = 200;

    /// <summary>SETTINGS and PING frames (not ACKs) a client may send per <see cref="FloodWindow"/>; past it GOAWAY ENHANCE_YOUR_CALM. Default 1000.</summary>
    public int MaxControlFramesPerWindow { get; init; } = 1000;

    /// <summary>Header sections over <see cref="MaxHeaderListSize"/> (answered 431) a connection may send before GOAWAY ENHANCE_YOUR_CALM (HPACK bomb). Default 3.</summary>
    public int MaxOversizedHeaderLists { get; init; } = 3;

    /// <summary>The window the flood counters count in. Default 10 s.</summary>
    public TimeSpan FloodWindow { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// How long a response may wait for the client to open its flow-control window: a stream window stall resets the
    /// stream (CANCEL), a connection window stall ends the connection (GOAWAY ENHANCE_YOUR_CALM). Default 30 s.
    /// </summary>
    public TimeSpan SendStallTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Every validation error, each naming the option; empty when valid.</summary>
    public IReadOnlyList<string> Validate()
    {
        var errors = new List<string>();
        if (MaxConcurrentStreams is < 1 or > 10_000)
        {
            errors.Add($"MaxConcurrentStreams must be 1-10000 (was {MaxConcurrentStreams}).");
        }

        if (InitialStreamWindowSize is < 65535 or > int.MaxValue)
        {
            errors.Add($"InitialStreamWindowSize must be 65535-2147483647 (was {InitialStreamWindowSize}).");
        }

        if (InitialConnectionWindowSize < 65535)
        {
            errors.Add($"InitialConnectionWindowSize must be at least 65535 (was {InitialConnectionWindowSize}).");
        }

        if (HeaderTableSize is < 0 or > 1024 * 1024)
        {
            errors.Add($"HeaderTableSize must be 0-1048576 (was {HeaderTableSize}).");
        }

        if (MaxHeaderListSize < 1024)
        {
            errors.Add($"MaxHeaderListSize must be at least 1024 (was {MaxHeaderListSize}).");
        }

        if (MaxHeaderBlockSize < 1024)
        {
            errors.Add($"MaxHeaderBlockSize must be at least 1024 (was {MaxHeaderBlockSize}).");
        }

        if (MaxStreamResetsPerWindow < 1)
        {
            errors.Add($"MaxStreamResetsPerWindow must be at least 1 (was {MaxStreamResetsPerWindow}).");
        }

        if (MaxControlFramesPerWindow < 1)
        {
            errors.Add($"MaxControlFramesPerWindow must be at least 1 (was {MaxControlFramesPerWindow}).");
        }

        if (MaxOversizedHeaderLists < 1)
        {
            errors.Add($"MaxOversizedHeaderLists must be at least 1 (was {MaxOversizedHeaderLists}).");
        }

        if (FloodWindow <= TimeSpan.Zero)
        {
            errors.Add($"FloodWindow must be positive (was {FloodWindow}).");
        }

        if (SendStallTimeout <= TimeSpan.Zero)
        {
            errors.Add($"SendStallTimeout must be positive (was {SendStallTimeout}).");
        }

        return errors;
    }
}
