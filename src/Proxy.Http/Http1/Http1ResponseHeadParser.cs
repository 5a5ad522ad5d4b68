using System.Buffers;
using System.Runtime.CompilerServices;

namespace Proxy.Http.Http1;

/// <summary>
/// Parses a response head from the upstream connection's buffer; same contract as
/// <see cref="Http1RequestHeadParser"/> (false = incomplete, nothing consumed; errors throw
/// <see cref="Http1ParseException"/>, which the forwarder answers with 502 and closes the upstream).
/// Body framing follows RFC 9112 §6.3: no body for HEAD, 1xx, 204, 304 and 2xx to CONNECT; chunked
/// when the final transfer coding is chunked; close-delimited when another coding is final or no
/// length is given.
/// </summary>
public sealed class Http1ResponseHeadParser
{
    private readonly Http1ParserOptions _options;

    /// <summary>Creates a parser with <paramref name="options"/> (defaults when null).</summary>
    public Http1ResponseHeadParser(Http1ParserOptions? options = null)
    {
        _options = options ?? Http1ParserOptions.Default;
    }

    /// <summary>Parses one response head to a request made with <paramref name="requestMethod"/>.</summary>
    public bool TryParse(in ReadOnlySequence<byte> buffer, Http1Method requestMethod, Http1ResponseHead head, out SequencePosition consumed)
    {
        // Partial-input checks only when this span is all we have, so the verdict never depends on segmentation.
        var length = Parse(buffer.First, requestMethod, head, buffer.IsSingleSegment);
        if (length >= 0)
        {
            consumed = buffer.GetPosition(length);
            return true;
        }

        if (buffer.IsSingleSegment)
        {
            consumed = buffer.Start;
            return false;
        }

        return TryParseMultiSegment(buffer, requestMethod, head, out consumed);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private bool TryParseMultiSegment(in ReadOnlySequence<byte> buffer, Http1Method requestMethod, Http1ResponseHead head, out SequencePosition consumed)
    {
        var cap = _options.MaxHeadBytes + 1;
        var length = (int)Math.Min(buffer.Length, cap);
        // Rent only what this attempt needs (a typical head is < 1 KiB); RentScratch grows it if a later attempt needs more.
        var scratch = head.RentScratch(length);
        buffer.Slice(0, length).CopyTo(scratch);
        var headLength = Parse(scratch.AsMemory(0, length), requestMethod, head, checkPartial: true);
        if (headLength < 0)
        {
            consumed = buffer.Start;
            return false;
        }

        consumed = buffer.GetPosition(headLength);
        return true;
    }

    private int Parse(ReadOnlyMemory<byte> memory, Http1Method requestMethod, Http1ResponseHead head, bool checkPartial)
    {
        var span = memory.Span;
        var options = _options;
        var lineStart = Http1HeaderSection.SkipLeadingEmptyLines(span, options.MaxStartLineBytes);
        var lf = span[lineStart..].IndexOf(Http1Syntax.LF);
        if (lf < 0)
        {
            // Leading empty lines count towards the start line, so a whole head never exceeds MaxHeadBytes.
            if (span.Length > options.MaxStartLineBytes + 1)
            {
                Http1ParseErrors.Throw(Http1ParseError.RequestLineTooLong);
            }

            return -1;
        }

        // Length before the CR check: a first segment without the LF is refused on its length alone (above), so the
        // same bytes must get the same error wherever a segment ends.
        var lineLength = lf - 1;
        if (lineStart + lineLength > options.MaxStartLineBytes)
        {
            Http1ParseErrors.Throw(Http1ParseError.RequestLineTooLong);
        }

        if (lf == 0 || span[lineStart + lf - 1] != Http1Syntax.CR)
        {
            Http1ParseErrors.Throw(Http1ParseError.BareLf);
        }

        head.Headers.Reset(memory);
        ParseStatusLine(span, lineStart, lineLength, head);

        var facts = Http1HeaderFacts.Create();
        var end = Http1HeaderSection.Parse(span, lineStart + lf + 1, head.Headers, options, isRequest: false, checkPartial, ref facts);
        if (end < 0)
        {
            return -1;
        }

        Complete(head, requestMethod, ref facts, end);
        return end;
    }

    private static void ParseStatusLine(ReadOnlySpan<byte> span, int start, int length, Http1ResponseHead head)
    {
        // HTTP-version SP 3DIGIT [ SP reason-phrase ]; the SP before an empty reason is optional in practice.
        var line = span.Slice(start, length);
        if (line.Contains(Http1Syntax.CR))
        {
            Http1ParseErrors.Throw(Http1ParseError.BareCr);
        }

        if (line.Length < 9 || line[8] != Http1Syntax.SP)
        {
            // Still tell a bad version from a missing space: "HTTP/1.01 200" is a bad version.
            Http1Syntax.ParseVersion(line[..Math.Min(8, line.Length)]);
            Http1ParseErrors.Throw(Http1ParseError.InvalidVersion);
        }

        var version = Http1Syntax.ParseVersion(line[..8]);
        if (line.Length < 12)
        {
            Http1ParseErrors.Throw(Http1ParseError.InvalidStatusLine);
        }

        var d0 = (uint)(line[9] - '0');
        var d1 = (uint)(line[10] - '0');
        var d2 = (uint)(line[11] - '0');
        if (d0 is 0 or > 9 || d1 > 9 || d2 > 9)
        {
            Http1ParseErrors.Throw(Http1ParseError.InvalidStatusLine);
        }

        var status = (int)((d0 * 100) + (d1 * 10) + d2);
        var reasonStart = 12;
        if (line.Length > 12)
        {
            if (line[12] != Http1Syntax.SP)
            {
                Http1ParseErrors.Throw(Http1ParseError.InvalidStatusLine);
            }

            reasonStart = 13;
            if (line[13..].IndexOfAny(Http1Syntax.InvalidValueChars) >= 0)
            {
                Http1ParseErrors.Throw(Http1ParseError.InvalidStatusLine);
            }
        }

        head.SetStatusLine(version, status, start + reasonStart, line.Length - reasonStart);
    }

    private static void Complete(Http1ResponseHead head, Http1Method requestMethod, ref Http1HeaderFacts facts, int headLength)
    {
        var status = head.StatusCode;
        var version = head.Version;
        if (facts.HasTransferEncoding && version == Http1Version.Http10)
        {
            Http1ParseErrors.Throw(Http1ParseError.TransferEncodingInHttp10);
        }

        var tunnel = status == 101 || (requestMethod == Http1Method.Connect && status is >= 200 and < 300);
        Http1BodyKind bodyKind;
        if (status < 200 || status == 204 || status == 304 || requestMethod == Http1Method.Head || tunnel)
        {
            bodyKind = Http1BodyKind.None;
        }
        else if (facts.HasTransferEncoding)
        {
            if (facts.TransferCodings == 0 || facts.ChunkedCodings > 1 && facts.LastCodingIsChunked)
            {
                Http1ParseErrors.Throw(Http1ParseError.InvalidTransferEncoding);
            }

            if (!facts.LastCodingIsChunked)
            {
                // RFC 9112 §6.3 (4): chunked not final in a response -> read until the connection closes.
                bodyKind = Http1BodyKind.CloseDelimited;
            }
            else if (facts.TransferCodings > 1)
            {
                Http1ParseErrors.Throw(Http1ParseError.UnsupportedTransferCoding);
                bodyKind = default;
            }
            else
            {
                bodyKind = Http1BodyKind.Chunked;
            }
        }
        else if (facts.ContentLength >= 0)
        {
            bodyKind = Http1BodyKind.ContentLength;
        }
        else
        {
            bodyKind = Http1BodyKind.CloseDelimited;
        }

        var keepAlive = !facts.ConnectionClose && (version == Http1Version.Http11 || facts.ConnectionKeepAlive)
            && bodyKind != Http1BodyKind.CloseDelimited && !tunnel;
        head.Headers.MarkConnectionNominated();
        head.SetFacts(bodyKind, facts.ContentLength, keepAlive, tunnel, facts.UpgradeIndex, headLength);
    }
}
