namespace Proxy.Http.Http1;

/// <summary>Method recognition: a cheap switch for common methods, a table for the rest of the registry.</summary>
internal static class Http1Methods
{
    // IANA HTTP Method Registry (minus PRI, reserved for the HTTP/2 preface) plus extensions in wide use.
    private static readonly byte[][] _registered =
    [
        "ACL"u8.ToArray(), "BASELINE-CONTROL"u8.ToArray(), "BIND"u8.ToArray(), "CHECKIN"u8.ToArray(),
        "CHECKOUT"u8.ToArray(), "COPY"u8.ToArray(), "LABEL"u8.ToArray(), "LINK"u8.ToArray(), "LOCK"u8.ToArray(),
        "MERGE"u8.ToArray(), "MKACTIVITY"u8.ToArray(), "MKCALENDAR"u8.ToArray(), "MKCOL"u8.ToArray(),
        "MKREDIRECTREF"u8.ToArray(), "MKWORKSPACE"u8.ToArray(), "MOVE"u8.ToArray(), "ORDERPATCH"u8.ToArray(),
        "PROPFIND"u8.ToArray(), "PROPPATCH"u8.ToArray(), "QUERY"u8.ToArray(), "REBIND"u8.ToArray(),
        "REPORT"u8.ToArray(), "SEARCH"u8.ToArray(), "UNBIND"u8.ToArray(), "UNCHECKOUT"u8.ToArray(),
        "UNLINK"u8.ToArray(), "UNLOCK"u8.ToArray(), "UPDATE"u8.ToArray(), "UPDATEREDIRECTREF"u8.ToArray(),
        "VERSION-CONTROL"u8.ToArray(),
        "PURGE"u8.ToArray(), "M-SEARCH"u8.ToArray(), "NOTIFY"u8.ToArray(), "SUBSCRIBE"u8.ToArray(),
        "UNSUBSCRIBE"u8.ToArray(), "SOURCE"u8.ToArray(),
    ];

    /// <summary>Known value for common methods (case-sensitive, RFC 9110 §9.1), else <see cref="Http1Method.Other"/>.</summary>
    public static Http1Method Recognize(ReadOnlySpan<byte> method) => method.Length switch
    {
        3 when method.SequenceEqual("GET"u8) => Http1Method.Get,
        3 when method.SequenceEqual("PUT"u8) => Http1Method.Put,
        4 when method.SequenceEqual("POST"u8) => Http1Method.Post,
        4 when method.SequenceEqual("HEAD"u8) => Http1Method.Head,
        5 when method.SequenceEqual("PATCH"u8) => Http1Method.Patch,
        5 when method.SequenceEqual("TRACE"u8) => Http1Method.Trace,
        6 when method.SequenceEqual("DELETE"u8) => Http1Method.Delete,
        7 when method.SequenceEqual("OPTIONS"u8) => Http1Method.Options,
        7 when method.SequenceEqual("CONNECT"u8) => Http1Method.Connect,
        _ => Http1Method.Other,
    };

    /// <summary>True for a registered method that has no enum value of its own.</summary>
    public static bool IsRegisteredOther(ReadOnlySpan<byte> method)
    {
        foreach (var candidate in _registered)
        {
            if (method.SequenceEqual(candidate))
            {
                return true;
            }
        }

        return false;
    }
}
