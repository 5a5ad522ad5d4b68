using System.Buffers;
using Proxy.Http.Http1;

namespace Proxy.Http.Tests.Http1;

/// <summary>One message as a forwarder would see it, copied out of the parse buffers for comparison.</summary>
internal sealed class ParsedMessage
{
    public string Method { get; set; } = "";
    public string Target { get; set; } = "";
    public Http1Version Version { get; set; }
    public int Status { get; set; }
    public List<(string Name, string Value)> Headers { get; } = [];
    public List<(string Name, string Value)> Trailers { get; } = [];
    public List<byte> Body { get; } = [];
    public Http1BodyKind BodyKind { get; set; }
    public bool Complete { get; set; }
    public bool KeepAlive { get; set; }
}

/// <summary>How a run over a whole input ended.</summary>
internal enum DriverOutcome
{
    /// <summary>All input consumed at a message boundary.</summary>
    EndOfInput,
    /// <summary>Input ended inside a head or body; nothing more would be forwarded until more bytes come.</summary>
    Truncated,
    /// <summary>The codec refused the input (400-class answer, connection closed).</summary>
    Rejected,
    /// <summary>A message without keep-alive ended the connection; remaining bytes are never read.</summary>
    Closed,
    /// <summary>The connection switched to a byte tunnel (Upgrade / CONNECT / 101).</summary>
    Tunnel,
    /// <summary>A close-delimited response body runs to the end of input.</summary>
    CloseDelimited,
}

internal sealed class DriverResult
{
    public List<ParsedMessage> Messages { get; } = [];
    public DriverOutcome Outcome { get; set; }
    public Http1ParseError? Error { get; set; }
    public long UnreadBytes { get; set; }

    public override string ToString() => $"{Outcome} {Error} messages={Messages.Count} unread={UnreadBytes}";
}

/// <summary>
/// Drives the codec over a whole connection's input the way the forwarder will: head, body by its
/// framing, then the next message while keep-alive holds.
/// </summary>
internal static class Http1TestDriver
{
    public static DriverResult RunRequests(ReadOnlySequence<byte> input, Http1ParserOptions options)
    {
        var result = new DriverResult();
        var parser = new Http1RequestHeadParser(options);
        using var head = new Http1RequestHead();
        var chunked = new ChunkedBodyReader(options);
        var rest = input;
        try
        {
            while (true)
            {
                if (OnlyEmptyLines(rest))
                {
                    result.Outcome = DriverOutcome.EndOfInput;
                    return result;
                }

                if (!parser.TryParse(rest, head, out var consumed))
                {
                    Assert.Equal(rest.Start, consumed);
                    result.Outcome = DriverOutcome.Truncated;
                    return result;
                }

                var message = new ParsedMessage
                {
                    Method = TestSequences.Text(head.MethodBytes),
                    Target = TestSequences.Text(head.Target),
                    Version = head.Version,
                    BodyKind = head.BodyKind,
                    KeepAlive = head.KeepAlive,
                };
                CopyHeaders(head.Headers, message.Headers);
                result.Messages.Add(message);
                rest = rest.Slice(consumed);
                rest = ReadBody(rest, head.BodyKind, head.ContentLength, chunked, message);
                if (!message.Complete)
                {
                    result.Outcome = DriverOutcome.Truncated;
                    return result;
                }

                if (head.IsUpgrade || head.Method == Http1Method.Connect)
                {
                    result.Outcome = DriverOutcome.Tunnel;
                    result.UnreadBytes = rest.Length;
                    return result;
                }

                if (!head.KeepAlive)
                {
                    result.Outcome = DriverOutcome.Closed;
                    result.UnreadBytes = rest.Length;
                    return result;
                }
            }
        }
        catch (Http1ParseException e)
        {
            result.Outcome = DriverOutcome.Rejected;
            result.Error = e.Error;
            return result;
        }
    }

    public static DriverResult RunResponses(ReadOnlySequence<byte> input, Http1ParserOptions options, Http1Method requestMethod = Http1Method.Get)
    {
        var result = new DriverResult();
        var parser = new Http1ResponseHeadParser(options);
        using var head = new Http1ResponseHead();
        var chunked = new ChunkedBodyReader(options);
        var rest = input;
        try
        {
            while (true)
            {
                if (OnlyEmptyLines(rest))
                {
                    result.Outcome = DriverOutcome.EndOfInput;
                    return result;
                }

                if (!parser.TryParse(rest, requestMethod, head, out var consumed))
                {
                    Assert.Equal(rest.Start, consumed);
                    result.Outcome = DriverOutcome.Truncated;
                    return result;
                }

                var message = new ParsedMessage
                {
                    Status = head.StatusCode,
                    Version = head.Version,
                    BodyKind = head.BodyKind,
                    KeepAlive = head.KeepAlive,
                };
                CopyHeaders(head.Headers, message.Headers);
                result.Messages.Add(message);
                rest = rest.Slice(consumed);
                if (head.BodyKind == Http1BodyKind.CloseDelimited)
                {
                    message.Body.AddRange(rest.ToArray());
                    result.Outcome = DriverOutcome.CloseDelimited;
                    return result;
                }

                rest = ReadBody(rest, head.BodyKind, head.ContentLength, chunked, message);
                if (!message.Complete)
                {
                    result.Outcome = DriverOutcome.Truncated;
                    return result;
                }

                if (head.SwitchesToTunnel)
                {
                    result.Outcome = DriverOutcome.Tunnel;
                    result.UnreadBytes = rest.Length;
                    return result;
                }

                if (!head.KeepAlive && !head.IsInterim)
                {
                    result.Outcome = DriverOutcome.Closed;
                    result.UnreadBytes = rest.Length;
                    return result;
                }
            }
        }
        catch (Http1ParseException e)
        {
            result.Outcome = DriverOutcome.Rejected;
            result.Error = e.Error;
            return result;
        }
    }

    private static ReadOnlySequence<byte> ReadBody(ReadOnlySequence<byte> rest, Http1BodyKind kind, long contentLength, ChunkedBodyReader chunked, ParsedMessage message)
    {
        switch (kind)
        {
            case Http1BodyKind.ContentLength:
                var reader = new ContentLengthBodyReader();
                reader.Reset(contentLength);
                var data = reader.Read(rest);
                message.Body.AddRange(data.ToArray());
                message.Complete = reader.IsComplete;
                return rest.Slice(data.End);
            case Http1BodyKind.Chunked:
                chunked.Reset();
                while (true)
                {
                    var r = chunked.Read(rest, out var chunk, out var consumed);
                    if (r == ChunkedReadResult.Completed)
                    {
                        CopyHeaders(chunked.Trailers, message.Trailers);
                        message.Complete = true;
                        return rest.Slice(consumed);
                    }

                    message.Body.AddRange(chunk.ToArray());
                    rest = rest.Slice(consumed);
                    if (r == ChunkedReadResult.NeedMoreData)
                    {
                        message.Complete = false;
                        return rest;
                    }
                }

            default:
                message.Complete = true;
                return rest;
        }
    }

    private static void CopyHeaders(Http1HeaderList headers, List<(string, string)> into)
    {
        for (var i = 0; i < headers.Count; i++)
        {
            into.Add((TestSequences.Text(headers.GetName(i)), TestSequences.Text(headers.GetValue(i))));
        }
    }

    private static bool OnlyEmptyLines(in ReadOnlySequence<byte> rest)
    {
        var bytes = rest.ToArray();
        if (bytes.Length % 2 != 0)
        {
            return false;
        }

        for (var i = 0; i < bytes.Length; i += 2)
        {
            if (bytes[i] != '\r' || bytes[i + 1] != '\n')
            {
                return false;
            }
        }

        return true;
    }
}
