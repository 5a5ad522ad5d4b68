namespace Proxy.Http.Http1;

/// <summary>Limits of the HTTP/1.1 codec. Immutable; one instance is shared by every connection of a listener.</summary>
public sealed record Http1ParserOptions
{
    /// <summary>The defaults below.</summary>
    public static Http1ParserOptions Default { get; } = new();

    /// <summary>Longest request or status line, without its CRLF (default 8 KiB; longer -> 414).</summary>
    public int MaxStartLineBytes { get; init; } = 8 * 1024;

    /// <summary>Largest header section, every field line with its CRLF plus the final CRLF (default 32 KiB; larger -> 431).</summary>
    public int MaxHeaderBytes { get; init; } = 32 * 1024;

    /// <summary>Most header fields in one head (default 100; more -> 431).</summary>
    public int MaxHeaderCount { get; init; } = 100;

    /// <summary>Longest chunk-size line including extensions, without its CRLF (default 4 KiB).</summary>
    public int MaxChunkLineBytes { get; init; } = 4 * 1024;

    /// <summary>Largest trailer section after the last chunk (default 16 KiB).</summary>
    public int MaxTrailerBytes { get; init; } = 16 * 1024;

    /// <summary>
    /// Refuse an HTTP/1.1 request without Host (RFC 9112 §3.2 says a server MUST). Default true;
    /// switched off only by tests that compare the rest of the parse with a reference parser.
    /// </summary>
    public bool RequireHostForHttp11 { get; init; } = true;

    /// <summary>
    /// Accept any token as a method. Default false: only methods of the IANA registry plus a few
    /// widely used extensions (PURGE, M-SEARCH, NOTIFY, SUBSCRIBE, UNSUBSCRIBE, SOURCE) pass; others get 501.
    /// </summary>
    public bool AllowUnregisteredMethods { get; init; }

    /// <summary>Every invalid value, each naming the setting; empty when valid.</summary>
    public IReadOnlyList<string> Validate()
    {
        var errors = new List<string>();
        if (MaxStartLineBytes < 16)
        {
            errors.Add($"{nameof(MaxStartLineBytes)} must be at least 16 (was {MaxStartLineBytes}).");
        }

        if (MaxHeaderBytes < 2)
        {
            errors.Add($"{nameof(MaxHeaderBytes)} must be at least 2 (was {MaxHeaderBytes}).");
        }

        if (MaxHeaderCount < 0)
        {
            errors.Add($"{nameof(MaxHeaderCount)} must not be negative (was {MaxHeaderCount}).");
        }

        if (MaxChunkLineBytes < 1)
        {
            errors.Add($"{nameof(MaxChunkLineBytes)} must be at least 1 (was {MaxChunkLineBytes}).");
        }

        if (MaxTrailerBytes < 2)
        {
            errors.Add($"{nameof(MaxTrailerBytes)} must be at least 2 (was {MaxTrailerBytes}).");
        }

        if ((long)MaxStartLineBytes + MaxHeaderBytes > 1024 * 1024)
        {
            errors.Add($"{nameof(MaxStartLineBytes)} + {nameof(MaxHeaderBytes)} must not exceed 1 MiB.");
        }

        return errors;
    }

    /// <summary>Largest head the parser ever needs to look at before it can decide (start line, CRLF, headers).</summary>
    internal int MaxHeadBytes => MaxStartLineBytes + 2 + MaxHeaderBytes;
}
