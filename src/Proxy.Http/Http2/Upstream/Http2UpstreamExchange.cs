using System.Buffers;
using System.IO.Pipelines;
using System.Runtime.CompilerServices;
using System.Text;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Http.Features;
using Proxy.Core.Transport;
using Proxy.Core.Upstream;
using Proxy.Http.Forwarding;
using Proxy.Http.Http1;
using Proxy.Http.Http2.Client;

namespace Proxy.Http.Http2.Upstream;

/// <summary>
/// One HTTP/2 stream dressed as an HTTP/1.1 upstream connection: the <see cref="ConnectionContext"/> inside the
/// <see cref="PooledConnection"/> that <see cref="Http2UpstreamPool"/> hands out. A renter writes HTTP/1.1 request
/// bytes to <see cref="Transport"/>.Output and reads an HTTP/1.1 response from its Input; the forwarder instead hands the
/// request head over typed (<see cref="BeginTypedHead"/>, <see cref="SendTypedHead"/>) and takes the final response head
/// typed (<see cref="TryTakeTypedResponse"/>), and only bodies (and 1xx heads) cross the pipes. The text path:
/// <code>
/// request pipe ─► Http1RequestHeadParser ─► fields (:method :scheme :authority :path, hop-by-hop dropped) ─► HEADERS
///              ─► Content-Length slices / chunked payload ─► DATA (stream + connection windows) ─► trailers ─► HEADERS
/// stream ─► 1xx heads ─► "HTTP/1.1 1xx" · final head ─► status line + fields (+ transfer-encoding: chunked when the
///           response has a body and no content-length) ─► DATA ─► chunks (or raw with content-length) ─► trailers ─► last chunk
/// failure before the head ─► the response pipe fails (IOException: the forwarder answers 502, or retries a refused stream)
/// </code>
/// Reused: after <see cref="Finish"/> (the pool's Return) and the end of its pumps, the pipes are reset and the object
/// goes back to the pool.
/// </summary>
internal sealed class Http2UpstreamExchange : ConnectionContext, IDuplexPipe, IUpstreamExchangeStatus
{
    private readonly InlinePipe _requestPipe;
    private readonly InlinePipe _responsePipe;
    private readonly Http1RequestHeadParser _parser;
    private readonly Http1RequestHead _head = new();
    private readonly ContentLengthBodyReader _length = new();
    private readonly ChunkedBodyReader _chunks;
    private readonly Http2FieldList _fields = new();
    private readonly CoalescingBufferWriter _headWriter = new();
    private readonly Turn _requestTurn = new();
    private readonly Turn _responseTurn = new();
    private Http2UpstreamPool? _pool;
    private Http2ClientStream? _stream;
    private PooledConnection? _pooled;
    private bool _responseIsHead;
    private bool _acceptsTrailers;
    // A request head handed over already mapped (TrySendTypedHead): set by the renter, taken by the request pump.
    private volatile bool _typedHead;
    private Http1BodyKind _typedBodyKind;
    private long _typedContentLength;
    // The final response head handed back typed (the renter sent its head typed, so it takes the answer the same way):
    // set by the response pump, taken by TryTakeTypedResponse; the body still comes through the pipe.
    private bool _typedResponseWanted;
    private Http2ClientResponseHead? _typedResponse;
    private Http1BodyKind _typedResponseBody;
    private long _typedResponseLength;
    private int _refs;
    private volatile bool _finished;
    private volatile bool _refused;
    private volatile string? _failure;
    private IFeatureCollection? _features;
    private IDictionary<object, object?>? _items;
    private string? _connectionId;

    public Http2UpstreamExchange(Http1ParserOptions parserOptions)
    {
        // The forwarder's writes never wait on an unread head; the body is bounded by the HTTP/2 windows behind it.
        // Inline pipes: the forwarder's flush runs the request pump, and the client connection's frame loop runs the
        // response pump and then the forwarder, on the caller's thread (no thread-pool hop). Neither side flushes,
        // advances or completes these pipes under a lock.
        _requestPipe = new InlinePipe(pauseWriterThreshold: 64 * 1024, resumeWriterThreshold: 32 * 1024, keepSegment: false);
        _responsePipe = new InlinePipe(pauseWriterThreshold: 64 * 1024, resumeWriterThreshold: 32 * 1024, keepSegment: false);
        _parser = new Http1RequestHeadParser(parserOptions);
        _chunks = new ChunkedBodyReader(parserOptions);

        // The exchange's two pumps: long-lived loops woken per exchange (see Turn), so a steady stream of exchanges
        // allocates no state machine. They end when the exchange's buffers are disposed. They capture no execution
        // context (resumed directly, not through ExecutionContext.RunInternal).
        using (SuppressedFlow.Begin())
        {
            _ = RequestLoopAsync();
            _ = ResponseLoopAsync();
        }
    }

    internal Http2UpstreamPool.EndpointState? Endpoint { get; private set; }

    internal Http2UpstreamPool.Http2PooledConnection? Owner { get; private set; }

    /// <summary>How the stream ended, once it did (null while it runs or when it never opened).</summary>
    public Http2StreamEnd? LastEnd { get; private set; }

    public bool WasRefused => _refused;

    public string? FailureDescription => _failure;

    // ---- ConnectionContext / IDuplexPipe ----------------------------------------------------------

    public PipeReader Input => _responsePipe.Reader;

    public PipeWriter Output => _requestPipe.Writer;

    public override IDuplexPipe Transport
    {
        get => this;
        set => throw new NotSupportedException("The transport of an HTTP/2 upstream exchange is fixed.");
    }

    public override string ConnectionId
    {
        get => _connectionId ??= "h2-" + Owner?.Client.GetHashCode().ToString("x", System.Globalization.CultureInfo.InvariantCulture);
        set => _connectionId = value;
    }

    public override IFeatureCollection Features => _features ??= new FeatureCollection();

    public override IDictionary<object, object?> Items
    {
        get => _items ??= new Dictionary<object, object?>();
        set => _items = value;
    }

    /// <summary>The renter gives up on the exchange mid-way: the stream is reset (RST_STREAM CANCEL) and the pumps stop.</summary>
    public override void Abort(ConnectionAbortedException abortReason)
    {
        _stream?.Reset(Http2ErrorCode.Cancel);
        _requestPipe.Reader.CancelPendingRead();
    }

    // ---- lifecycle -------------------------------------------------------------------------------

    internal PooledConnection Start(Http2UpstreamPool pool, Http2UpstreamPool.EndpointState endpoint, Http2UpstreamPool.Http2PooledConnection owner, Http2ClientStream stream, bool reused)
    {
        _pool = pool;
        Endpoint = endpoint;
        Owner = owner;
        _stream = stream;
        _finished = false;
        _refused = false;
        _failure = null;
        LastEnd = null;
        _connectionId = null;
        _items?.Clear();
        _refs = 2;
        if (_pooled is null || !_pooled.Address.Equals(endpoint.Address))
        {
            _pooled = new PooledConnection(endpoint.Address, this);
        }

        _pooled.IsReused = reused;
        _pooled.UseCount = owner.Carried - 1;
        // References: the request pump, the response pump and the renter; the last to let go recycles the exchange.
        _refs = 3;
        _typedHead = false;
        _typedResponseWanted = false;
        _requestTurn.Signal(true);
        return _pooled;
    }

    /// <summary>The pool's Return: ends the stream unless it completed (RST_STREAM CANCEL) and unblocks the pumps.</summary>
    internal void Finish()
    {
        _finished = true;
        var stream = _stream!;
        stream.Reset(Http2ErrorCode.Cancel);
        // The renter no longer touches the transport: complete its ends so the pumps see the end of both pipes.
        _requestPipe.Writer.Complete();
        _responsePipe.Reader.Complete();
        Release();
    }

    private void Release()
    {
        if (Interlocked.Decrement(ref _refs) != 0)
        {
            return;
        }

        // Both pumps ended and the renter returned the exchange: make it new.
        Interlocked.Exchange(ref _typedResponse, null)?.Dispose();
        var stream = _stream!;
        _stream = null;
        stream.Dispose();
        _requestPipe.Reader.Complete();
        _responsePipe.Writer.Complete();
        _requestPipe.Reset();
        _responsePipe.Reset();
        var pool = _pool!;
        _pool = null;
        Owner = null;
        Endpoint = null;
        pool.Recycle(this);
    }

    /// <summary>The exchange will not be used again: its buffers are freed and its pumps end.</summary>
    internal void DisposeBuffers()
    {
        _fields.Dispose();
        _requestTurn.Signal(false);
        _responseTurn.Signal(false);
    }

    // ---- the exchange ----------------------------------------------------------------------------

    /// <summary>
    /// The request pump, one iteration per exchange: the request head becomes HEADERS (then the response pump starts),
    /// the body DATA and trailers. Never throws.
    /// </summary>
    private async Task RequestLoopAsync()
    {
        while (await _requestTurn.WaitAsync().ConfigureAwait(false))
        {
            SuppressedFlow.Ensure();
            var responseStarted = false;
            var stream = _stream!;
            var input = _requestPipe.Reader;
            var output = _responsePipe.Writer;
            try
            {
                // 1. The request head.
                ReadResult result;
                ReadOnlySequence<byte> buffer;
                SequencePosition consumed;
                var typed = false;
                while (true)
                {
                    result = await input.ReadAsync().ConfigureAwait(false);
                    buffer = result.Buffer;
                    if (!_finished && _typedHead)
                    {
                        // The renter mapped the head itself (TrySendTypedHead woke this read): no bytes to parse.
                        _typedHead = false;
                        typed = true;
                        consumed = buffer.Start;
                        break;
                    }

                    if (_finished || result.IsCanceled)
                    {
                        input.AdvanceTo(buffer.Start);
                        FailResponse(output, "the exchange was abandoned before its request head");
                        goto Done;
                    }

                    bool parsed;
                    try
                    {
                        parsed = _parser.TryParse(buffer, _head, out consumed);
                    }
                    catch (Http1ParseException e)
                    {
                        // The forwarder's own parser took this request; its head as forwarded (route mutations
                        // included) is past this parser's limits. Said now, or the forwarder would wait for a response.
                        input.AdvanceTo(buffer.End);
                        FailResponse(output, $"the request head as forwarded could not be mapped to HTTP/2 ({e.Message})");
                        goto Done;
                    }

                    if (parsed)
                    {
                        break;
                    }

                    if (result.IsCompleted)
                    {
                        input.AdvanceTo(buffer.End);
                        FailResponse(output, "the request head ended early");
                        goto Done;
                    }

                    input.AdvanceTo(buffer.Start, buffer.End);
                }

                Http1BodyKind bodyKind;
                long contentLength;
                if (typed)
                {
                    bodyKind = _typedBodyKind;
                    contentLength = _typedContentLength;
                }
                else
                {
                    var head = _head;
                    if (head.Method == Http1Method.Connect || head.IsUpgrade)
                    {
                        input.AdvanceTo(consumed);
                        await RespondNotImplementedAsync(output).ConfigureAwait(false);
                        goto Done;
                    }

                    bodyKind = head.BodyKind;
                    contentLength = head.ContentLength;
                    _responseIsHead = head.Method == Http1Method.Head;
                    _acceptsTrailers = AcceptsTrailers(head);
                    BuildRequestFields(head, _fields, Owner!.Transport.RemoteEndPoint, Owner.Secure);
                }

                var hasBody = bodyKind == Http1BodyKind.Chunked || (bodyKind == Http1BodyKind.ContentLength && contentLength > 0);
                input.AdvanceTo(consumed);

                // 2. HEADERS, then the response side runs while the body goes up.
                if (!await stream.WriteHeadersAsync(_fields, endStream: !hasBody).ConfigureAwait(false))
                {
                    await FailFromStreamAsync(stream, output).ConfigureAwait(false);
                    goto Done;
                }

                responseStarted = true;
                _responseTurn.Signal(true);
                if (hasBody)
                {
                    await SendBodyAsync(stream, input, bodyKind, contentLength).ConfigureAwait(false);
                }
            }
            catch (Exception e) when (e is IOException or InvalidOperationException or ObjectDisposedException or OperationCanceledException or Http1ParseException or Http2StreamAbortedException)
            {
                // Reported through the pipes, or the stream was reset.
            }

        Done:
            _requestTurn.Arm();
            if (!responseStarted)
            {
                Release();
            }

            Release();
        }
    }

    /// <summary>Request fields for HTTP/2: pseudo-headers from the request line and Host, the rest minus connection-specific fields.</summary>
    internal static void BuildRequestFields(Http1RequestHead head, Http2FieldList fields, System.Net.EndPoint? endpoint, bool secure = false)
    {
        fields.Clear();
        AddPseudoHeaders(fields, head.MethodBytes, head.Target, head.TargetForm, head.Host, endpoint, secure);
        AddRegularFields(head, fields);
    }

    /// <summary>:method, :scheme, :authority (the URI's for an absolute-form target, else <paramref name="host"/>) and :path.</summary>
    internal static void AddPseudoHeaders(Http2FieldList fields, ReadOnlySpan<byte> method, ReadOnlySpan<byte> target, Http1TargetForm form, ReadOnlySpan<byte> host, System.Net.EndPoint? endpoint, bool secure)
    {
        fields.Add(":method"u8, method);
        fields.Add(":scheme"u8, secure ? "https"u8 : "http"u8);
        ReadOnlySpan<byte> path = target;
        var authority = host;
        if (form == Http1TargetForm.Absolute)
        {
            // scheme "://" authority path-abempty [ "?" query ]: the authority of the URI wins over Host (RFC 9112 §3.2.2).
            var rest = target;
            var sep = rest.IndexOf("://"u8);
            rest = sep < 0 ? rest : rest[(sep + 3)..];
            var end = rest.IndexOfAny((byte)'/', (byte)'?');
            authority = end < 0 ? rest : rest[..end];
            path = end < 0 ? "/"u8 : rest[end..];
            if (!path.IsEmpty && path[0] == (byte)'?')
            {
                // "http://a?x" has an empty path: "/" comes first.
                fields.Add(":authority"u8, authority);
                AddPathWithSlash(fields, path);
                return;
            }
        }

        if (authority.IsEmpty && endpoint is not null)
        {
            // HTTP/1.0 without Host: name the endpoint (rare; allocates).
            authority = Encoding.ASCII.GetBytes(endpoint.ToString() ?? "");
        }

        if (!authority.IsEmpty)
        {
            fields.Add(":authority"u8, authority);
        }

        fields.Add(":path"u8, path);
    }

    /// <summary>
    /// The final response head of a typed exchange, if it has come (the renter's read of the transport woke, by a flush
    /// or an empty cancelled read): <paramref name="target"/> is filled as the HTTP/1.1 parse of the text head would fill
    /// it (status, standard reason phrase, the fields, body framing as the pipe will carry the body; Connection-free and
    /// keep-alive). The head is taken once; false when there is none (not typed, or not arrived).
    /// </summary>
    internal bool TryTakeTypedResponse(Http1ResponseHead target)
    {
        var head = Interlocked.Exchange(ref _typedResponse, null);
        if (head is null)
        {
            return false;
        }

        var fields = head.Fields;
        // The content-length the text head would carry (left out when the body goes chunked, as there).
        var dropLength = _typedResponseBody == Http1BodyKind.Chunked;
        var bytes = 0;
        for (var i = 0; i < fields.Count; i++)
        {
            bytes += fields.GetName(i).Length + fields.GetValue(i).Length;
        }

        target.BeginTyped(head.StatusCode, Http1ReasonPhrases.For(head.StatusCode), bytes);
        var declared = -1L;
        for (var i = 0; i < fields.Count; i++)
        {
            var name = fields.GetName(i);
            var value = fields.GetValue(i);
            if (name.Length == 14 && Ascii.EqualsIgnoreCase(name, "content-length"u8))
            {
                if (dropLength)
                {
                    continue;
                }

                _ = System.Buffers.Text.Utf8Parser.TryParse(value, out declared, out _);
            }

            target.AddTypedField(name, value);
        }

        target.EndTyped(_typedResponseBody, _typedResponseBody == Http1BodyKind.ContentLength ? _typedResponseLength : declared, keepAlive: true);
        head.Dispose();
        return true;
    }

    /// <summary>
    /// The typed request head, step 1: the field list to fill (cleared) and the exchange's scheme and endpoint for the
    /// pseudo-headers. Only for a renter that then calls <see cref="SendTypedHead"/> before writing anything.
    /// </summary>
    internal Http2FieldList BeginTypedHead(out System.Net.EndPoint? endpoint, out bool secure)
    {
        _fields.Clear();
        endpoint = Owner!.Transport.RemoteEndPoint;
        secure = Owner.Secure;
        return _fields;
    }

    /// <summary>
    /// The typed request head, step 2: the fields are complete; the request pump sends them as HEADERS (as it would a
    /// parsed head) and then reads the body, framed as <paramref name="bodyKind"/> says, from the transport.
    /// </summary>
    internal void SendTypedHead(bool isHead, bool acceptsTrailers, Http1BodyKind bodyKind, long contentLength)
    {
        _typedResponseWanted = true;
        _responseIsHead = isHead;
        _acceptsTrailers = acceptsTrailers;
        _typedBodyKind = bodyKind;
        _typedContentLength = contentLength;
        _typedHead = true;
        // Wakes the pump's wait for the head bytes (inline); a pump not waiting yet finds the flag at its read.
        _requestPipe.Reader.CancelPendingRead();
    }

    private static void AddPathWithSlash(Http2FieldList fields, ReadOnlySpan<byte> query)
    {
        Span<byte> scratch = query.Length < 256 ? stackalloc byte[query.Length + 1] : new byte[query.Length + 1];
        scratch[0] = (byte)'/';
        query.CopyTo(scratch[1..]);
        fields.Add(":path"u8, scratch);
    }

    private static void AddRegularFields(Http1RequestHead head, Http2FieldList fields)
    {
        var headers = head.Headers;
        for (var i = 0; i < headers.Count; i++)
        {
            var known = headers.GetKnown(i);
            if (known == Http1KnownHeader.Host)
            {
                continue;
            }

            if (known == Http1KnownHeader.TE)
            {
                // The only TE value HTTP/2 allows (RFC 9113 §8.2.2); the forwarder says it again when the client did.
                if (ListsTrailers(headers.GetValue(i)))
                {
                    fields.Add("te"u8, "trailers"u8);
                }

                continue;
            }

            if (headers.IsHopByHop(i))
            {
                continue;
            }

            // Names go out lowercased by the HPACK encoder.
            fields.Add(headers.GetName(i), headers.GetValue(i));
        }
    }

    /// <summary>Whether the request says (TE: trailers) that the client takes trailers: then a response body is relayed chunked, to carry them.</summary>
    private static bool AcceptsTrailers(Http1RequestHead head)
    {
        var headers = head.Headers;
        for (var i = 0; i < headers.Count; i++)
        {
            if (headers.GetKnown(i) == Http1KnownHeader.TE && ListsTrailers(headers.GetValue(i)))
            {
                return true;
            }
        }

        return false;
    }

    private static bool ListsTrailers(ReadOnlySpan<byte> value)
    {
        while (!value.IsEmpty)
        {
            var comma = value.IndexOf((byte)',');
            var item = comma < 0 ? value : value[..comma];
            value = comma < 0 ? default : value[(comma + 1)..];
            var semi = item.IndexOf((byte)';');
            if (semi >= 0)
            {
                item = item[..semi];
            }

            if (Ascii.EqualsIgnoreCase(item.Trim(" \t"u8), "trailers"u8))
            {
                return true;
            }
        }

        return false;
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask SendBodyAsync(Http2ClientStream stream, PipeReader input, Http1BodyKind kind, long contentLength)
    {
        if (kind == Http1BodyKind.ContentLength)
        {
            _length.Reset(contentLength);
        }
        else
        {
            _chunks.Reset();
        }

        while (true)
        {
            var result = await input.ReadAsync().ConfigureAwait(false);
            var buffer = result.Buffer;
            if (_finished || result.IsCanceled)
            {
                input.AdvanceTo(buffer.Start, buffer.End);
                stream.Reset(Http2ErrorCode.Cancel);
                return;
            }

            if (kind == Http1BodyKind.ContentLength)
            {
                var slice = _length.Read(buffer);
                var done = _length.IsComplete;
                var sent = slice.IsEmpty && !done || await stream.WriteDataAsync(slice, endStream: done).ConfigureAwait(false);
                input.AdvanceTo(slice.End, buffer.End);
                if (!sent || done)
                {
                    return;
                }
            }
            else
            {
                var rest = buffer;
                while (true)
                {
                    ChunkedReadResult read;
                    ReadOnlySequence<byte> data;
                    SequencePosition position;
                    try
                    {
                        read = _chunks.Read(rest, out data, out position);
                    }
                    catch (Http1ParseException)
                    {
                        // The forwarder validated the chunks it forwards: this is our bug or its abort.
                        input.AdvanceTo(buffer.End);
                        stream.Reset(Http2ErrorCode.Cancel);
                        return;
                    }

                    if (read == ChunkedReadResult.Data)
                    {
                        if (!await stream.WriteDataAsync(data, endStream: false).ConfigureAwait(false))
                        {
                            input.AdvanceTo(buffer.End);
                            return;
                        }

                        rest = rest.Slice(position);
                        continue;
                    }

                    if (read == ChunkedReadResult.Completed)
                    {
                        var trailers = _chunks.Trailers;
                        if (trailers.Count > 0)
                        {
                            _fields.Clear();
                            for (var i = 0; i < trailers.Count; i++)
                            {
                                if (!trailers.IsHopByHop(i))
                                {
                                    _fields.Add(trailers.GetName(i), trailers.GetValue(i));
                                }
                            }

                            input.AdvanceTo(position);
                            if (_fields.Count > 0)
                            {
                                await stream.WriteTrailersAsync(_fields).ConfigureAwait(false);
                            }
                            else
                            {
                                await stream.WriteDataAsync(default, endStream: true).ConfigureAwait(false);
                            }

                            return;
                        }

                        input.AdvanceTo(position);
                        await stream.WriteDataAsync(default, endStream: true).ConfigureAwait(false);
                        return;
                    }

                    // Need more data: framing up to position is decoded.
                    input.AdvanceTo(position, buffer.End);
                    break;
                }
            }

            if (result.IsCompleted)
            {
                // The forwarder's side ended in the middle of the body.
                stream.Reset(Http2ErrorCode.Cancel);
                return;
            }
        }
    }

    /// <summary>
    /// The response pump, one iteration per exchange (started once HEADERS left): response heads become an HTTP/1.1
    /// head, DATA the body (chunk-framed unless the length is known), trailers chunked trailers. Never throws.
    /// </summary>
    private async Task ResponseLoopAsync()
    {
        while (await _responseTurn.WaitAsync().ConfigureAwait(false))
        {
            SuppressedFlow.Ensure();
            var stream = _stream!;
            var output = _responsePipe.Writer;
            var isHead = _responseIsHead;
            var acceptsTrailers = _acceptsTrailers;
            // A typed head not yet announced (see AnnounceTypedHead).
            var announce = false;
            try
            {
                Http2ClientResponseHead head;
                int status;
                bool chunked;
                while (true)
                {
                    try
                    {
                        head = await stream.ReadResponseHeadAsync().ConfigureAwait(false);
                    }
                    catch (Http2StreamAbortedException e)
                    {
                        Fail(output, e.End, beforeHead: true);
                        goto Done;
                    }

                    status = head.StatusCode;
                    var fields = head.Fields;
                    var noBody = isHead || status is < 200 or 204 or 304;
                    // HTTP/2 may send trailers after any body, also one with content-length (gRPC-like servers do);
                    // HTTP/1.1 carries trailers only in chunked framing, and never with content-length (RFC 9112 §6.2).
                    // So when the client takes trailers (TE: trailers; gRPC clients always say it) and trailers may
                    // still come, a body with content-length is relayed chunked without it: the trailers go on after
                    // the last chunk (to an HTTP/2 client: a final HEADERS with END_STREAM). The upstream's DATA are
                    // still checked against its content-length by the client connection. Otherwise the length is
                    // kept: when the stream has already ended without trailers (e.g. a gRPC trailers-only answer,
                    // HEADERS with END_STREAM and content-length: 0, which must stay one HEADERS with END_STREAM), or
                    // when the client does not take trailers (dropped then, as RFC 9110 §6.5.1 allows).
                    var hasLength = fields.TryGetValue("content-length"u8, out var lengthValue);
                    chunked = !noBody && (!hasLength || (acceptsTrailers && (!stream.TryGetEnd(out _) || stream.Trailers is not null)));
                    if (status >= 200 && _typedResponseWanted)
                    {
                        // Handed over as it is (TryTakeTypedResponse); the renter learns of it at the first flush below.
                        _typedResponseBody = noBody ? Http1BodyKind.None : chunked ? Http1BodyKind.Chunked : Http1BodyKind.ContentLength;
                        _typedResponseLength = _typedResponseBody == Http1BodyKind.ContentLength
                            && System.Buffers.Text.Utf8Parser.TryParse(lengthValue, out long declared, out var used) && used == lengthValue.Length ? declared : -1;
                        Volatile.Write(ref _typedResponse, head);
                        announce = true;
                        break;
                    }

                    var writer = _headWriter.Start(output);
                    Http1HeadWriter.WriteStatusLine(writer, Http1Version.Http11, status, Http1ReasonPhrases.For(status));
                    for (var i = 0; i < fields.Count; i++)
                    {
                        if (chunked && hasLength && fields.GetName(i).SequenceEqual("content-length"u8))
                        {
                            continue;
                        }

                        Http1HeadWriter.WriteHeader(writer, fields.GetName(i), fields.GetValue(i));
                    }

                    if (chunked)
                    {
                        writer.Write("transfer-encoding: chunked\r\n"u8);
                    }

                    Http1HeadWriter.WriteEndOfHead(writer);
                    writer.Commit();
                    head.Dispose();
                    if (status >= 200)
                    {
                        break;
                    }

                    // 1xx: on its way now (a 100 lets the client send its body).
                    var interim = await output.FlushAsync().ConfigureAwait(false);
                    if (interim.IsCompleted || _finished)
                    {
                        goto Done;
                    }
                }

                // The body: DATA payloads as they come, chunk-framed unless the length is known.
                // Body bytes already here go out in the same flush as what precedes them: a small response whose DATA
                // arrived with its HEADERS reaches the forwarder as one piece (one pass there instead of two).
                var body = stream.ResponseBody;
                while (true)
                {
                    ReadResult result;
                    bool ready;
                    try
                    {
                        ready = body.TryRead(out result);
                    }
                    catch (Http2StreamAbortedException)
                    {
                        // Reported below, after what was written so far has gone out (as without the shortcut).
                        ready = false;
                        result = default;
                    }

                    if (!ready)
                    {
                        AnnounceTypedHead(ref announce, output);
                        var flush = await output.FlushAsync().ConfigureAwait(false);
                        if (flush.IsCompleted || _finished)
                        {
                            body.Complete();
                            goto Done;
                        }

                        try
                        {
                            result = await body.ReadAsync().ConfigureAwait(false);
                        }
                        catch (Http2StreamAbortedException e)
                        {
                            Fail(output, e.End, beforeHead: false);
                            goto Done;
                        }
                    }

                    var buffer = result.Buffer;
                    if (!buffer.IsEmpty)
                    {
                        if (chunked)
                        {
                            WriteChunkHeader(output, buffer.Length);
                        }

                        foreach (var segment in buffer)
                        {
                            output.Write(segment.Span);
                        }

                        if (chunked)
                        {
                            output.Write("\r\n"u8);
                        }
                    }

                    body.AdvanceTo(buffer.End);
                    if (result.IsCompleted)
                    {
                        if (chunked)
                        {
                            output.Write("0\r\n"u8);
                            if (stream.Trailers is { } trailers)
                            {
                                for (var i = 0; i < trailers.Count; i++)
                                {
                                    Http1HeadWriter.WriteHeader(output, trailers.GetName(i), trailers.GetValue(i));
                                }
                            }

                            output.Write("\r\n"u8);
                        }

                        body.Complete();
                        AnnounceTypedHead(ref announce, output);
                        await output.FlushAsync().ConfigureAwait(false);
                        // The body completed, so the stream has ended: read without allocating its Completion task.
                        LastEnd = stream.TryGetEnd(out var ended) ? ended : await stream.Completion.ConfigureAwait(false);
                        goto Done;
                    }
                }
            }
            catch (Exception e) when (e is IOException or InvalidOperationException or ObjectDisposedException or OperationCanceledException or Http1ParseException or Http2StreamAbortedException)
            {
                // Reported through the pipes, or the stream was reset.
            }

        Done:
            _responseTurn.Arm();
            Release();
        }
    }

    /// <summary>
    /// Wakes the renter for a typed head handed over and not announced yet: a flush carrying bytes wakes its read by
    /// itself; with nothing to flush (no body, or none yet) its read is woken empty (cancelled) to take the head.
    /// </summary>
    private void AnnounceTypedHead(ref bool announce, PipeWriter output)
    {
        if (announce)
        {
            announce = false;
            if (output.UnflushedBytes == 0)
            {
                _responsePipe.Reader.CancelPendingRead();
            }
        }
    }

    private static void WriteChunkHeader(PipeWriter output, long length)
    {
        var span = output.GetSpan(18);
        length.TryFormat(span, out var written, "x", System.Globalization.CultureInfo.InvariantCulture);
        span[written++] = (byte)'\r';
        span[written++] = (byte)'\n';
        output.Advance(written);
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask FailFromStreamAsync(Http2ClientStream stream, PipeWriter output)
    {
        var end = await stream.Completion.ConfigureAwait(false);
        Fail(output, end, beforeHead: true);
    }

    private void Fail(PipeWriter output, Http2StreamEnd end, bool beforeHead)
    {
        LastEnd = end;
        _refused = beforeHead && end.IsRetryable;
        _failure = Describe(end);
        output.Complete(new Http2UpstreamStreamException(end, _failure));
    }

    private void FailResponse(PipeWriter output, string reason)
    {
        _failure = reason;
        _stream?.Reset(Http2ErrorCode.Cancel);
        output.Complete(new IOException(reason));
    }

    internal static string Describe(Http2StreamEnd end) => end.Kind switch
    {
        Http2StreamEndKind.ResetByPeer => $"the upstream reset the HTTP/2 stream (RST_STREAM {ErrorName(end.ErrorCode)})",
        Http2StreamEndKind.Refused => $"the upstream refused the HTTP/2 stream without processing it ({(end.ErrorCode == Http2ErrorCode.RefusedStream ? "RST_STREAM REFUSED_STREAM" : "GOAWAY " + ErrorName(end.ErrorCode))})",
        Http2StreamEndKind.ResetLocally => $"the proxy reset the HTTP/2 stream ({end.Reason ?? ErrorName(end.ErrorCode)})",
        Http2StreamEndKind.ConnectionLost => $"the HTTP/2 connection ended ({end.Reason ?? ErrorName(end.ErrorCode)})",
        _ => "the HTTP/2 stream ended without a response",
    };

    private static string ErrorName(Http2ErrorCode code) => code switch
    {
        Http2ErrorCode.NoError => "NO_ERROR",
        Http2ErrorCode.ProtocolError => "PROTOCOL_ERROR",
        Http2ErrorCode.InternalError => "INTERNAL_ERROR",
        Http2ErrorCode.FlowControlError => "FLOW_CONTROL_ERROR",
        Http2ErrorCode.StreamClosed => "STREAM_CLOSED",
        Http2ErrorCode.RefusedStream => "REFUSED_STREAM",
        Http2ErrorCode.Cancel => "CANCEL",
        Http2ErrorCode.EnhanceYourCalm => "ENHANCE_YOUR_CALM",
        _ => code.ToString(),
    };

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask RespondNotImplementedAsync(PipeWriter output)
    {
        // The forwarder sends CONNECT and Upgrade over HTTP/1.1; arriving here is a wiring mistake, said plainly.
        _failure = "HTTP/2 cannot carry CONNECT or Upgrade requests";
        ProxyResponse.Write(output, 501, ProxyErrors.UpstreamProtocol,
            "the HTTP/2 upstream pool cannot carry a CONNECT or Upgrade request (HTTP/2 has no Upgrade; CONNECT goes over HTTP/1.1)",
            close: true, http10KeepAlive: false, omitBody: false);
        await output.FlushAsync().ConfigureAwait(false);
    }
    /// <summary>
    /// A reusable one-shot signal that wakes one of the exchange's long-lived pumps: armed (reset) by the pump before it
    /// lets go of the exchange, signalled with true for the next exchange or false when the exchange is dropped.
    /// </summary>
    private sealed class Turn : System.Threading.Tasks.Sources.IValueTaskSource<bool>
    {
        private System.Threading.Tasks.Sources.ManualResetValueTaskSourceCore<bool> _core;

        public void Arm() => _core.Reset();

        public void Signal(bool go) => _core.SetResult(go);

        public ValueTask<bool> WaitAsync() => new(this, _core.Version);

        public bool GetResult(short token) => _core.GetResult(token);

        public System.Threading.Tasks.Sources.ValueTaskSourceStatus GetStatus(short token) => _core.GetStatus(token);

        public void OnCompleted(Action<object?> continuation, object? state, short token, System.Threading.Tasks.Sources.ValueTaskSourceOnCompletedFlags flags) =>
            _core.OnCompleted(continuation, state, token, flags);
    }
}

/// <summary>The HTTP/2 stream behind an exchange ended before its response did (the forwarder reads it as an upstream reset).</summary>
public sealed class Http2UpstreamStreamException : IOException
{
    /// <summary>Creates the exception.</summary>
    public Http2UpstreamStreamException(Http2StreamEnd end, string message)
        : base(message)
    {
        End = end;
    }

    /// <summary>Not used; present for the standard exception constructors.</summary>
    public Http2UpstreamStreamException()
    {
    }

    /// <summary>Not used; present for the standard exception constructors.</summary>
    public Http2UpstreamStreamException(string message)
        : base(message)
    {
    }

    /// <summary>Not used; present for the standard exception constructors.</summary>
    public Http2UpstreamStreamException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    /// <summary>How the stream ended.</summary>
    public Http2StreamEnd End { get; }
}
