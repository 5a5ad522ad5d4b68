using System.Buffers;
using System.Runtime.CompilerServices;

namespace Proxy.Http.Http1;

/// <summary>
/// Parses a request head (request line and header section) from a PipeReader buffer.
/// <para>
/// Contract (as Kestrel): <see cref="TryParse"/> returns false when the head is not complete yet and
/// consumes nothing; the caller then calls <c>AdvanceTo(buffer.Start, buffer.End)</c> and reads more.
/// It returns true with <c>consumed</c> just after the head's final CRLF; the body (if any) follows.
/// Anything the proxy must refuse throws <see cref="Http1ParseException"/>, which carries the status
/// (400/414/431/501/505) to answer before closing the connection.
/// </para>
/// <para>
/// Fast path: the head lies in the first buffer segment and is parsed in place. Otherwise (head split
/// across segments, rare with Kestrel's 4 KiB+ blocks) the bytes, bounded by the head limits, are copied
/// into a pooled per-connection buffer and parsed there. A slow sender makes us re-scan the partial head
/// on every read; the limits bound that cost.
/// </para>
/// The parser itself holds no per-connection state and may be shared.
/// </summary>
public sealed class Http1RequestHeadParser
{
    private readonly Http1ParserOptions _options;

    /// <summary>Creates a parser with <paramref name="options"/> (defaults when null).</summary>
    public Http1RequestHeadParser(Http1ParserOptions? options = null)
    {
        _options = options ?? Http1ParserOptions.Default;
    }

    /// <summary>Options in use.</summary>
    public Http1ParserOptions Options => _options;

    /// <summary>Parses one request head from the start of <paramref name="buffer"/> into <paramref name="head"/>.</summary>
    public bool TryParse(in ReadOnlySequence<byte> buffer, Http1RequestHead head, out SequencePosition consumed)
    {
        var first = buffer.First;
        // Partial-input checks only when this span is all we have, so the verdict never depends on segmentation.
        var length = Parse(first, head, buffer.IsSingleSegment);
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

        return TryParseMultiSegment(buffer, head, out consumed);
    }

    /// <summary>
    /// Parses a whole request head held in <paramref name="text"/> from a copy in <paramref name="head"/>'s own
    /// buffer, so the head stays readable whatever happens to <paramref name="text"/>. False when the text is not
    /// exactly one complete head; throws <see cref="Http1ParseException"/> as <see cref="TryParse"/> does.
    /// </summary>
    internal bool TryParseCopy(ReadOnlySpan<byte> text, Http1RequestHead head)
    {
        if (text.IsEmpty || text.Length > _options.MaxHeadBytes)
        {
            return false;
        }

        var scratch = head.RentScratch(text.Length);
        text.CopyTo(scratch);
        return Parse(scratch.AsMemory(0, text.Length), head, checkPartial: true) == text.Length;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private bool TryParseMultiSegment(in ReadOnlySequence<byte> buffer, Http1RequestHead head, out SequencePosition consumed)
    {
        // One byte beyond the largest legal head is enough to decide: either the head ends or a limit trips.
        var cap = _options.MaxHeadBytes + 1;
        var length = (int)Math.Min(buffer.Length, cap);
        // Rent only what this attempt needs (a typical head is < 1 KiB); RentScratch grows it if a later attempt needs more.
        var scratch = head.RentScratch(length);
        buffer.Slice(0, length).CopyTo(scratch);
        var headLength = Parse(scratch.AsMemory(0, length), head, checkPartial: true);
        if (headLength < 0)
        {
            consumed = buffer.Start;
            return false;
        }

        consumed = buffer.GetPosition(headLength);
        return true;
    }

    /// <summary>Parses the head in one contiguous block; returns its length or -1 when incomplete.</summary>
    private int Parse(ReadOnlyMemory<byte> memory, Http1RequestHead head, bool checkPartial)
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

            if (checkPartial)
            {
                CheckPartialRequestLine(span[lineStart..], options);
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
        ParseRequestLine(span, lineStart, lineLength, head, options);

        var facts = Http1HeaderFacts.Create();
        var end = Http1HeaderSection.Parse(span, lineStart + lf + 1, head.Headers, options, isRequest: true, checkPartial, ref facts);
        if (end < 0)
        {
            return -1;
        }

        Complete(head, ref facts, end, options);
        return end;
    }

    /// <summary>
    /// Refuses an incomplete request line that can already be seen to be wrong (bad method, target or
    /// version), with the same error the complete line would get. Lines holding a CR wait for their LF.
    /// </summary>
    private static void CheckPartialRequestLine(ReadOnlySpan<byte> partial, Http1ParserOptions options)
    {
        if (partial.Contains(Http1Syntax.CR))
        {
            return;
        }

        var sp1 = partial.IndexOf(Http1Syntax.SP);
        if (sp1 < 0)
        {
            return;
        }

        var method = partial[..sp1];
        if (sp1 == 0 || method.IndexOfAnyExcept(Http1Syntax.TokenChars) >= 0)
        {
            Http1ParseErrors.Throw(Http1ParseError.InvalidMethod);
        }

        if (Http1Methods.Recognize(method) == Http1Method.Other && !options.AllowUnregisteredMethods && !Http1Methods.IsRegisteredOther(method))
        {
            Http1ParseErrors.Throw(Http1ParseError.UnknownMethod);
        }

        var afterMethod = partial[(sp1 + 1)..];
        var sp2 = afterMethod.IndexOf(Http1Syntax.SP);
        if (sp2 < 0)
        {
            return;
        }

        var target = afterMethod[..sp2];
        if (target.IsEmpty || target.IndexOfAnyExceptInRange((byte)0x21, (byte)0x7E) >= 0)
        {
            Http1ParseErrors.Throw(Http1ParseError.InvalidTarget);
        }

        var version = afterMethod[(sp2 + 1)..];
        if (version.Length >= 8)
        {
            // The complete line's version is these 8 bytes (then CR) or longer, which is invalid.
            Http1Syntax.ParseVersion(version[..8]);
            if (version.Length > 8)
            {
                Http1ParseErrors.Throw(Http1ParseError.InvalidVersion);
            }

            return;
        }

        ReadOnlySpan<byte> shape = "HTTP/0.0"u8;
        for (var i = 0; i < version.Length; i++)
        {
            var ok = i is 5 or 7 ? char.IsAsciiDigit((char)version[i]) : version[i] == shape[i];
            if (!ok)
            {
                Http1ParseErrors.Throw(Http1ParseError.InvalidVersion);
            }
        }
    }

    private static void ParseRequestLine(ReadOnlySpan<byte> span, int start, int length, Http1RequestHead head, Http1ParserOptions options)
    {
        var line = span.Slice(start, length);
        if (line.Contains(Http1Syntax.CR))
        {
            Http1ParseErrors.Throw(Http1ParseError.BareCr);
        }

        // method SP request-target SP HTTP-version, single spaces only (RFC 9112 §3).
        var sp1 = line.IndexOf(Http1Syntax.SP);
        if (sp1 <= 0)
        {
            Http1ParseErrors.Throw(sp1 == 0 ? Http1ParseError.InvalidMethod : Http1ParseError.InvalidRequestLine);
        }

        var method = line[..sp1];
        if (method.IndexOfAnyExcept(Http1Syntax.TokenChars) >= 0)
        {
            Http1ParseErrors.Throw(Http1ParseError.InvalidMethod);
        }

        var known = Http1Methods.Recognize(method);
        if (known == Http1Method.Other && !options.AllowUnregisteredMethods && !Http1Methods.IsRegisteredOther(method))
        {
            Http1ParseErrors.Throw(Http1ParseError.UnknownMethod);
        }

        var afterMethod = line[(sp1 + 1)..];
        var sp2 = afterMethod.IndexOf(Http1Syntax.SP);
        if (sp2 < 0)
        {
            // "GET /" is HTTP/0.9, which we do not speak.
            Http1ParseErrors.Throw(Http1ParseError.InvalidRequestLine);
        }

        var target = afterMethod[..sp2];
        if (target.IsEmpty || target.IndexOfAnyExceptInRange((byte)0x21, (byte)0x7E) >= 0)
        {
            Http1ParseErrors.Throw(Http1ParseError.InvalidTarget);
        }

        var version = Http1Syntax.ParseVersion(afterMethod[(sp2 + 1)..]);
        var form = ClassifyTarget(target, known);
        head.SetStartLine(known, start, sp1, start + sp1 + 1, sp2, form, version);
    }

    private static Http1TargetForm ClassifyTarget(ReadOnlySpan<byte> target, Http1Method method)
    {
        if (method == Http1Method.Connect)
        {
            // authority-form only: host ":" port, nothing else (RFC 9112 §3.2.3).
            var colon = target.LastIndexOf((byte)':');
            if (colon <= 0 || colon == target.Length - 1 || target.IndexOfAny((byte)'/', (byte)'?', (byte)'#') >= 0
                || target[(colon + 1)..].IndexOfAnyExceptInRange((byte)'0', (byte)'9') >= 0 || target.Contains((byte)'@'))
            {
                Http1ParseErrors.Throw(Http1ParseError.InvalidTarget);
            }

            return Http1TargetForm.Authority;
        }

        if (target[0] == '/')
        {
            return Http1TargetForm.Origin;
        }

        if (target.Length == 1 && target[0] == '*')
        {
            return Http1TargetForm.Asterisk;
        }

        // absolute-URI: scheme ":" hier-part, scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ).
        var schemeEnd = target.IndexOf((byte)':');
        if (schemeEnd <= 0 || !char.IsAsciiLetter((char)target[0]))
        {
            Http1ParseErrors.Throw(Http1ParseError.InvalidTarget);
        }

        foreach (var b in target[..schemeEnd])
        {
            if (!char.IsAsciiLetterOrDigit((char)b) && b != '+' && b != '-' && b != '.')
            {
                Http1ParseErrors.Throw(Http1ParseError.InvalidTarget);
            }
        }

        return Http1TargetForm.Absolute;
    }

    private static void Complete(Http1RequestHead head, ref Http1HeaderFacts facts, int headLength, Http1ParserOptions options)
    {
        var version = head.Version;
        if (facts.HostCount == 0 && version == Http1Version.Http11 && options.RequireHostForHttp11)
        {
            Http1ParseErrors.Throw(Http1ParseError.MissingHost);
        }

        var bodyKind = Http1BodyKind.None;
        if (facts.HasTransferEncoding)
        {
            if (version == Http1Version.Http10)
            {
                Http1ParseErrors.Throw(Http1ParseError.TransferEncodingInHttp10);
            }

            if (facts.TransferCodings == 0 || facts.ChunkedCodings > 1)
            {
                Http1ParseErrors.Throw(Http1ParseError.InvalidTransferEncoding);
            }

            if (!facts.LastCodingIsChunked)
            {
                Http1ParseErrors.Throw(Http1ParseError.ChunkedNotFinal);
            }

            if (facts.TransferCodings > 1)
            {
                // e.g. "gzip, chunked": valid HTTP, but we would have to keep the inner coding on re-framing.
                Http1ParseErrors.Throw(Http1ParseError.UnsupportedTransferCoding);
            }

            bodyKind = Http1BodyKind.Chunked;
        }
        else if (facts.ContentLength >= 0)
        {
            bodyKind = Http1BodyKind.ContentLength;
        }

        var keepAlive = !facts.ConnectionClose && (version == Http1Version.Http11 || facts.ConnectionKeepAlive);
        if (head.Method == Http1Method.Connect)
        {
            // CONNECT has no content; bytes after the head are tunnel data. A framing field on CONNECT is
            // meaningless, so the connection must not be reused for another request whatever happens.
            if (bodyKind != Http1BodyKind.None)
            {
                keepAlive = false;
            }

            bodyKind = Http1BodyKind.None;
        }

        var isUpgrade = version == Http1Version.Http11 && facts.ConnectionUpgrade && facts.UpgradeIndex >= 0;
        head.Headers.MarkConnectionNominated();
        head.SetFacts(bodyKind, facts.ContentLength, keepAlive, facts.ExpectContinue && version == Http1Version.Http11, isUpgrade, facts.HostIndex, facts.UpgradeIndex, headLength);
    }
}
