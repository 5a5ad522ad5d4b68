using System.Text;

namespace Proxy.Http.Http1;

/// <summary>Facts gathered while the header lines of one head are parsed.</summary>
internal struct Http1HeaderFacts
{
    public long ContentLength;
    public bool HasTransferEncoding;
    public int TransferCodings;
    public int ChunkedCodings;
    public bool LastCodingIsChunked;
    public bool ConnectionClose;
    public bool ConnectionKeepAlive;
    public bool ConnectionUpgrade;
    public int HostCount;
    public int HostIndex;
    public int UpgradeIndex;
    public bool ExpectContinue;

    public static Http1HeaderFacts Create() => new() { ContentLength = -1, HostIndex = -1, UpgradeIndex = -1 };
}

/// <summary>
/// Parses the header section (RFC 9112 §5) of a request or response head held in one contiguous span.
/// Shared by both head parsers and, for trailer fields, by the chunked decoder.
/// </summary>
internal static class Http1HeaderSection
{
    /// <summary>
    /// Parses field lines from <paramref name="start"/> up to and including the empty line. Returns the
    /// offset just after the final CRLF, or -1 when the span ends first. Every complete line is validated,
    /// so a bad line is refused as soon as it arrives even if the head is not yet complete.
    /// </summary>
    public static int Parse(ReadOnlySpan<byte> span, int start, Http1HeaderList headers, Http1ParserOptions options, bool isRequest, bool checkPartial, ref Http1HeaderFacts facts)
    {
        var pos = start;
        while (true)
        {
            var rest = span[pos..];
            var lf = rest.IndexOf(Http1Syntax.LF);
            if (lf < 0)
            {
                if (span.Length - start > options.MaxHeaderBytes)
                {
                    Http1ParseErrors.Throw(Http1ParseError.HeaderTooLarge);
                }

                if (checkPartial)
                {
                    CheckPartialLine(rest);
                }

                return -1;
            }

            var lineEnd = pos + lf + 1;
            if (lineEnd - start > options.MaxHeaderBytes)
            {
                Http1ParseErrors.Throw(Http1ParseError.HeaderTooLarge);
            }

            if (lf == 0 || rest[lf - 1] != Http1Syntax.CR)
            {
                Http1ParseErrors.Throw(Http1ParseError.BareLf);
            }

            if (lf == 1)
            {
                return lineEnd;
            }

            ParseLine(span, pos, lf - 1, headers, options, isRequest, ref facts);
            pos = lineEnd;
        }
    }

    /// <summary>Refuses a partial line that can already be seen to be wrong (folding, or CR not followed by LF).</summary>
    public static void CheckPartialLine(ReadOnlySpan<byte> partial)
    {
        if (partial.IsEmpty)
        {
            return;
        }

        if (Http1Syntax.IsOws(partial[0]))
        {
            Http1ParseErrors.Throw(Http1ParseError.ObsFold);
        }

        var cr = partial.IndexOf(Http1Syntax.CR);
        if (cr >= 0 && cr + 1 < partial.Length)
        {
            // The span has no LF at all, so a CR with a byte after it is a bare CR.
            Http1ParseErrors.Throw(Http1ParseError.BareCr);
        }
    }

    /// <summary>Validates one field line <c>span[lineStart..lineStart+length]</c> (without CRLF) and records it.</summary>
    public static void ParseLine(ReadOnlySpan<byte> span, int lineStart, int length, Http1HeaderList headers, Http1ParserOptions options, bool isRequest, ref Http1HeaderFacts facts)
    {
        var line = span.Slice(lineStart, length);
        if (Http1Syntax.IsOws(line[0]))
        {
            Http1ParseErrors.Throw(Http1ParseError.ObsFold);
        }

        var colon = line.IndexOf((byte)':');
        if (colon < 0)
        {
            Http1ParseErrors.Throw(line.Contains(Http1Syntax.CR) ? Http1ParseError.BareCr : Http1ParseError.MissingColon);
        }

        var name = line[..colon];
        if (name.IsEmpty)
        {
            Http1ParseErrors.Throw(Http1ParseError.InvalidToken);
        }

        var bad = name.IndexOfAnyExcept(Http1Syntax.TokenChars);
        if (bad >= 0)
        {
            ThrowInvalidName(name, bad);
        }

        var valueStart = colon + 1;
        var valueEnd = line.Length;
        while (valueStart < valueEnd && Http1Syntax.IsOws(line[valueStart]))
        {
            valueStart++;
        }

        while (valueEnd > valueStart && Http1Syntax.IsOws(line[valueEnd - 1]))
        {
            valueEnd--;
        }

        var value = line[valueStart..valueEnd];
        var badValue = value.IndexOfAny(Http1Syntax.InvalidValueChars);
        if (badValue >= 0)
        {
            Http1ParseErrors.Throw(value[badValue] == Http1Syntax.CR ? Http1ParseError.BareCr : Http1ParseError.InvalidFieldValue);
        }

        if (headers.Count >= options.MaxHeaderCount)
        {
            Http1ParseErrors.Throw(Http1ParseError.TooManyHeaders);
        }

        var known = Http1Syntax.Classify(name);
        var index = headers.Count;
        headers.Add(lineStart, colon, lineStart + valueStart, valueEnd - valueStart, known);
        switch (known)
        {
            case Http1KnownHeader.ContentLength:
                if (facts.ContentLength >= 0)
                {
                    Http1ParseErrors.Throw(Http1ParseError.DuplicateContentLength);
                }

                if (facts.HasTransferEncoding)
                {
                    Http1ParseErrors.Throw(Http1ParseError.ContentLengthAndTransferEncoding);
                }

                facts.ContentLength = Http1Syntax.ParseContentLength(value);
                break;
            case Http1KnownHeader.TransferEncoding:
                if (facts.ContentLength >= 0)
                {
                    Http1ParseErrors.Throw(Http1ParseError.ContentLengthAndTransferEncoding);
                }

                facts.HasTransferEncoding = true;
                AddTransferCodings(value, ref facts);
                break;
            case Http1KnownHeader.Connection:
                AddConnectionTokens(value, ref facts);
                break;
            case Http1KnownHeader.Host when isRequest:
                if (++facts.HostCount > 1)
                {
                    Http1ParseErrors.Throw(Http1ParseError.DuplicateHost);
                }

                facts.HostIndex = index;
                break;
            case Http1KnownHeader.Upgrade:
                facts.UpgradeIndex = facts.UpgradeIndex < 0 ? index : facts.UpgradeIndex;
                break;
            case Http1KnownHeader.Expect:
                facts.ExpectContinue |= Ascii.EqualsIgnoreCase(value, "100-continue"u8);
                break;
        }
    }

    private static void AddTransferCodings(ReadOnlySpan<byte> value, ref Http1HeaderFacts facts)
    {
        while (Http1Syntax.NextListElement(ref value, out var coding))
        {
            if (coding.IsEmpty)
            {
                continue;
            }

            facts.TransferCodings++;
            var chunked = Ascii.EqualsIgnoreCase(coding, "chunked"u8);
            if (chunked)
            {
                facts.ChunkedCodings++;
            }

            facts.LastCodingIsChunked = chunked;
        }
    }

    private static void AddConnectionTokens(ReadOnlySpan<byte> value, ref Http1HeaderFacts facts)
    {
        while (Http1Syntax.NextListElement(ref value, out var token))
        {
            if (Ascii.EqualsIgnoreCase(token, "close"u8))
            {
                facts.ConnectionClose = true;
            }
            else if (Ascii.EqualsIgnoreCase(token, "keep-alive"u8))
            {
                facts.ConnectionKeepAlive = true;
            }
            else if (Ascii.EqualsIgnoreCase(token, "upgrade"u8))
            {
                facts.ConnectionUpgrade = true;
            }
        }
    }

    private static void ThrowInvalidName(ReadOnlySpan<byte> name, int bad)
    {
        var b = name[bad];
        if (Http1Syntax.IsOws(b) && name[bad..].IndexOfAnyExcept((byte)' ', (byte)'\t') < 0)
        {
            Http1ParseErrors.Throw(Http1ParseError.SpaceBeforeColon);
        }

        Http1ParseErrors.Throw(b == Http1Syntax.CR ? Http1ParseError.BareCr : Http1ParseError.InvalidToken);
    }

    /// <summary>Skips CRLFs before a start line (RFC 9112 §2.2 allows ignoring them); returns the start line offset.</summary>
    public static int SkipLeadingEmptyLines(ReadOnlySpan<byte> span, int maxSkip)
    {
        var pos = 0;
        while (pos + 1 < span.Length && span[pos] == Http1Syntax.CR && span[pos + 1] == Http1Syntax.LF)
        {
            pos += 2;
            if (pos > maxSkip)
            {
                Http1ParseErrors.Throw(Http1ParseError.RequestLineTooLong);
            }
        }

        if (pos < span.Length)
        {
            var b = span[pos];
            if (b == Http1Syntax.LF)
            {
                Http1ParseErrors.Throw(Http1ParseError.BareLf);
            }

            if (b == Http1Syntax.CR && pos + 1 < span.Length)
            {
                Http1ParseErrors.Throw(Http1ParseError.BareCr);
            }
        }

        return pos;
    }
}
