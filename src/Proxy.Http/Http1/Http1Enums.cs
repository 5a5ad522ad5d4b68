namespace Proxy.Http.Http1;

/// <summary>Request method; methods without their own value are <see cref="Other"/> and read from the head's method bytes.</summary>
public enum Http1Method : byte
{
    /// <summary>Any other method (see <c>Http1RequestHead.MethodBytes</c>).</summary>
    Other,
    /// <summary>GET</summary>
    Get,
    /// <summary>HEAD</summary>
    Head,
    /// <summary>POST</summary>
    Post,
    /// <summary>PUT</summary>
    Put,
    /// <summary>DELETE</summary>
    Delete,
    /// <summary>CONNECT</summary>
    Connect,
    /// <summary>OPTIONS</summary>
    Options,
    /// <summary>TRACE</summary>
    Trace,
    /// <summary>PATCH</summary>
    Patch,
}

/// <summary>Protocol version of a message.</summary>
public enum Http1Version : byte
{
    /// <summary>HTTP/1.0</summary>
    Http10,
    /// <summary>HTTP/1.1</summary>
    Http11,
}

/// <summary>Form of a request target (RFC 9112 §3.2).</summary>
public enum Http1TargetForm : byte
{
    /// <summary>absolute-path [ "?" query ], e.g. <c>/a?b</c>.</summary>
    Origin,
    /// <summary>absolute-URI, e.g. <c>http://host/a</c> (sent to proxies).</summary>
    Absolute,
    /// <summary>host:port, only with CONNECT.</summary>
    Authority,
    /// <summary><c>*</c> (server-wide OPTIONS).</summary>
    Asterisk,
}

/// <summary>How the end of a message body is found (RFC 9112 §6.3).</summary>
public enum Http1BodyKind : byte
{
    /// <summary>No body.</summary>
    None,
    /// <summary>Exactly <c>ContentLength</c> bytes follow (possibly 0).</summary>
    ContentLength,
    /// <summary>Chunked transfer coding; decode with <see cref="ChunkedBodyReader"/>.</summary>
    Chunked,
    /// <summary>Response body ends when the upstream closes the connection.</summary>
    CloseDelimited,
}

/// <summary>Header fields the codec itself interprets.</summary>
public enum Http1KnownHeader : byte
{
    /// <summary>Not interpreted by the codec.</summary>
    None,
    /// <summary>Host</summary>
    Host,
    /// <summary>Content-Length</summary>
    ContentLength,
    /// <summary>Transfer-Encoding (hop-by-hop)</summary>
    TransferEncoding,
    /// <summary>Connection (hop-by-hop)</summary>
    Connection,
    /// <summary>Keep-Alive (hop-by-hop)</summary>
    KeepAlive,
    /// <summary>Proxy-Connection (hop-by-hop)</summary>
    ProxyConnection,
    /// <summary>TE (hop-by-hop)</summary>
    TE,
    /// <summary>Trailer (hop-by-hop)</summary>
    Trailer,
    /// <summary>Upgrade (hop-by-hop)</summary>
    Upgrade,
    /// <summary>Expect</summary>
    Expect,
}
