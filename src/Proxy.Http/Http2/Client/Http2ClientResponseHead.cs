using Proxy.Http.Http2.Hpack;
using Proxy.Http.Http2.Translation;

namespace Proxy.Http.Http2.Client;

/// <summary>A response head received on a client stream: an interim (1xx) head or the final one.</summary>
public sealed class Http2ClientResponseHead : IDisposable
{
    private readonly Http2ClientStream? _owner;
    private bool _returned;

    internal Http2ClientResponseHead(int statusCode, Http2FieldList fields, Http2ClientStream? owner = null)
    {
        StatusCode = statusCode;
        Fields = fields;
        _owner = owner;
    }

    /// <summary>The :status value (100..999).</summary>
    public int StatusCode { get; private set; }

    /// <summary>Regular fields in the order received (no pseudo-headers), validated per RFC 9113 §8.2.</summary>
    public Http2FieldList Fields { get; private set; }

    /// <summary>1xx: more heads follow on the same stream.</summary>
    public bool IsInformational => StatusCode is >= 100 and < 200;

    /// <summary>Returns the fields' pooled buffers.</summary>
    public void Dispose()
    {
        if (_owner is null)
        {
            Fields.Dispose();
            return;
        }

        // Kept by its stream for the next head it receives (the object and the field buffers): Dispose once, and
        // not use the head after.
        if (!_returned)
        {
            _returned = true;
            _owner.ReturnHead(this);
        }
    }

    /// <summary>Makes a returned head carry a new status and fields (its stream's frame loop only).</summary>
    internal void Reuse(int statusCode, Http2FieldList fields)
    {
        StatusCode = statusCode;
        Fields = fields;
        _returned = false;
    }
}

/// <summary>
/// Collects and validates one decoded response field block (head or trailers) into an <see cref="Http2FieldList"/>:
/// RFC 9113 §8.2 field rules (<see cref="Http2FieldCheck"/>), §8.3.2 (:status only, once, first, three digits),
/// §8.1 (no pseudo-headers in trailers). The first error is kept; later fields are ignored.
/// </summary>
internal sealed class Http2ResponseCollector
{
    public Http2FieldList? Fields;
    public bool IsTrailers;
    public int Status;
    public Http2FieldError Error;
    private bool _sawRegular;

    public void Begin(Http2FieldList fields, bool trailers)
    {
        Fields = fields;
        IsTrailers = trailers;
        Status = 0;
        Error = Http2FieldError.None;
        _sawRegular = false;
    }

    /// <summary>The block ended: a head without :status is malformed.</summary>
    public Http2FieldError Complete()
    {
        if (Error == Http2FieldError.None && !IsTrailers && Status == 0)
        {
            Error = Http2FieldError.InvalidStatus;
        }

        return Error;
    }

    public void OnField(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value)
    {
        if (Error != Http2FieldError.None)
        {
            return;
        }

        if (!name.IsEmpty && name[0] == (byte)':')
        {
            Error = OnPseudo(name, value);
            return;
        }

        _sawRegular = true;
        var error = Http2FieldCheck.CheckRegular(name, value);
        if (error != Http2FieldError.None)
        {
            Error = error;
            return;
        }

        Fields!.Add(name, value);
    }

    private Http2FieldError OnPseudo(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value)
    {
        if (IsTrailers)
        {
            return Http2FieldError.PseudoHeaderInTrailers;
        }

        if (_sawRegular)
        {
            return Http2FieldError.PseudoHeaderAfterField;
        }

        if (!name.SequenceEqual(":status"u8))
        {
            return Http2FieldError.UnknownPseudoHeader;
        }

        if (Status != 0)
        {
            return Http2FieldError.DuplicatePseudoHeader;
        }

        // Three digits, the first 1-9 (RFC 9110 §15: 100..599 in use, 3 digits on the wire).
        if (value.Length != 3 || (uint)(value[0] - '1') > 8 || (uint)(value[1] - '0') > 9 || (uint)(value[2] - '0') > 9)
        {
            return Http2FieldError.InvalidStatus;
        }

        Status = ((value[0] - '0') * 100) + ((value[1] - '0') * 10) + (value[2] - '0');
        return Http2FieldError.None;
    }
}

/// <summary>HPACK handler forwarding every field as bytes to the collector (struct: the decoder's calls devirtualize).</summary>
internal readonly struct Http2ResponseSink(Http2ResponseCollector collector) : IHpackHeaderHandler
{
    public void OnHeader(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value) => collector.OnField(name, value);

    public void OnStaticIndexedHeader(int index) => collector.OnField(HpackStaticTable.Name(index), HpackStaticTable.Value(index));

    public void OnStaticIndexedHeader(int index, ReadOnlySpan<byte> value) => collector.OnField(HpackStaticTable.Name(index), value);
}

/// <summary>HPACK handler that drops every field (blocks of streams we no longer track: the table must stay in step).</summary>
internal readonly struct Http2DiscardSink : IHpackHeaderHandler
{
    public void OnHeader(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value)
    {
    }

    public void OnStaticIndexedHeader(int index)
    {
    }

    public void OnStaticIndexedHeader(int index, ReadOnlySpan<byte> value)
    {
    }
}
