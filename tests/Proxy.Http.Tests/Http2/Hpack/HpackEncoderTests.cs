using System.Buffers;
using Proxy.Http.Http2.Hpack;

namespace Proxy.Http.Tests.Http2.Hpack;

public sealed class HpackEncoderTests
{
    private static readonly List<(string Name, string Value)> s_request = Hpack.List(
        ":method", "GET", ":scheme", "https", ":authority", "shop.example.com", ":path", "/products/42",
        "user-agent", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        "accept", "text/html,application/xhtml+xml", "accept-encoding", "gzip, deflate, br");

    [Fact]
    public void Encode_RfcC4Requests_MatchRfcWire()
    {
        // RFC 7541 C.4 uses Huffman, indexes :authority, cache-control and custom-key: what our policy does too.
        var encoder = new HpackEncoder();
        Assert.Equal("828684418cf1e3c2e5f23a6ba0ab90f4ff", Convert.ToHexStringLower(Hpack.EncodeBlock(encoder,
            Hpack.List(":method", "GET", ":scheme", "http", ":path", "/", ":authority", "www.example.com"))));
        Assert.Equal("828684be5886a8eb10649cbf", Convert.ToHexStringLower(Hpack.EncodeBlock(encoder,
            Hpack.List(":method", "GET", ":scheme", "http", ":path", "/", ":authority", "www.example.com", "cache-control", "no-cache"))));
        Assert.Equal("828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf", Convert.ToHexStringLower(Hpack.EncodeBlock(encoder,
            Hpack.List(":method", "GET", ":scheme", "https", ":path", "/index.html", ":authority", "www.example.com", "custom-key", "custom-value"))));
    }

    [Fact]
    public void Encode_RfcC3WithoutHuffman_MatchesRfcWire()
    {
        var encoder = new HpackEncoder(new HpackEncoderOptions { UseHuffman = false });
        Assert.Equal("828684410f7777772e6578616d706c652e636f6d", Convert.ToHexStringLower(Hpack.EncodeBlock(encoder,
            Hpack.List(":method", "GET", ":scheme", "http", ":path", "/", ":authority", "www.example.com"))));
        Assert.Equal("828684be58086e6f2d6361636865", Convert.ToHexStringLower(Hpack.EncodeBlock(encoder,
            Hpack.List(":method", "GET", ":scheme", "http", ":path", "/", ":authority", "www.example.com", "cache-control", "no-cache"))));
    }

    [Fact]
    public void Encode_RepeatedRequest_SecondBlockIsAllIndexed()
    {
        var encoder = new HpackEncoder();
        using var decoder = new HpackDecoder();
        var first = Hpack.EncodeBlock(encoder, s_request);
        var second = Hpack.EncodeBlock(encoder, s_request);
        Assert.Equal(s_request.Count, second.Length); // one byte per field
        Assert.True(first.Length > second.Length);
        Assert.Equal(s_request, Hpack.DecodeBlock(decoder, first));
        Assert.Equal(s_request, Hpack.DecodeBlock(decoder, second));
    }

    [Theory]
    [InlineData("authorization", "Bearer abc.def.ghi-a-long-token-value")]
    [InlineData("proxy-authorization", "Basic dXNlcjpwYXNz")]
    [InlineData("cookie", "session=3f2a9c1e7b; theme=dark; consent=yes")]
    [InlineData("set-cookie", "id=a3fWa; Max-Age=2592000")]
    public void Encode_SensitiveHeader_NeverIndexedAndNotAddedToTable(string name, string value)
    {
        var encoder = new HpackEncoder();
        var block = Hpack.EncodeBlock(encoder, [(name, value)]);
        Assert.Equal(0x10, block[0] & 0xF0);
        Assert.Equal(0, encoder.DynamicTable.Count);
        // Sent again, still never indexed (no dynamic hit).
        Assert.Equal(0x10, Hpack.EncodeBlock(encoder, [(name, value)])[0] & 0xF0);

        using var decoder = new HpackDecoder();
        var handler = new NeverIndexedProbe(decoder);
        decoder.Decode(block.AsSpan(), endHeaders: true, ref handler);
        Assert.True(handler.SawNeverIndexed);
    }

    [Fact]
    public void Encode_CookiesIndexingAllowed_LongCookieIndexedShortOneNever()
    {
        var encoder = new HpackEncoder(new HpackEncoderOptions { NeverIndexCookies = false });
        var longCookie = Hpack.EncodeBlock(encoder, [("cookie", "session=3f2a9c1e7b4d5e6f7a8b9c0d")]);
        Assert.Equal(0x40, longCookie[0] & 0xC0);
        var shortCookie = Hpack.EncodeBlock(encoder, [("cookie", "a=1")]);
        Assert.Equal(0x10, shortCookie[0] & 0xF0);
    }

    [Theory]
    [InlineData(":path", "/search?q=hpack")]
    [InlineData("content-length", "1234")]
    [InlineData("etag", "\"33a64df551425fcc55e4d42a148795d9f25f89d4\"")]
    [InlineData("if-modified-since", "Wed, 21 Oct 2015 07:28:00 GMT")]
    [InlineData("last-modified", "Wed, 21 Oct 2015 07:28:00 GMT")]
    public void Encode_RarelyRepeatingValue_LiteralWithoutIndexing(string name, string value)
    {
        var encoder = new HpackEncoder();
        var block = Hpack.EncodeBlock(encoder, [(name, value)]);
        Assert.Equal(0x00, block[0] & 0xF0);
        Assert.Equal(0, encoder.DynamicTable.Count);
    }

    [Fact]
    public void Encode_Date_IndexedBecauseItRepeatsWithinASecond()
    {
        var encoder = new HpackEncoder();
        Hpack.EncodeBlock(encoder, [("date", "Thu, 26 Nov 2026 07:00:00 GMT")]);
        Assert.Single(Hpack.EncodeBlock(encoder, [("date", "Thu, 26 Nov 2026 07:00:00 GMT")]));
    }

    [Fact]
    public void Encode_ValueLongerThanHalfTheTable_NotIndexed()
    {
        var encoder = new HpackEncoder();
        var block = Hpack.EncodeBlock(encoder, [("x-big", new string('a', 2100))]);
        Assert.Equal(0x00, block[0] & 0xF0);
        Assert.Equal(0, encoder.DynamicTable.Count);
    }

    [Fact]
    public void Encode_UppercaseName_IsLowercasedOnTheWire()
    {
        var encoder = new HpackEncoder();
        using var decoder = new HpackDecoder();
        var block = Hpack.EncodeBlock(encoder, [("Content-Type", "text/plain"), ("X-Custom-" + new string('H', 300), "v")]);
        var list = Hpack.DecodeBlock(decoder, block);
        Assert.Equal("content-type", list[0].Name);
        Assert.Equal("x-custom-" + new string('h', 300), list[1].Name);
    }

    [Fact]
    public void Encode_HuffmanOnlyWhenShorter()
    {
        var encoder = new HpackEncoder();
        // Bytes >= 0x80 have long codes: raw is shorter, so the H bit is clear.
        var block = Hpack.EncodeBlock(encoder, [("x-bin", "\u00ff\u00fe\u00fd")]);
        Assert.Equal(0x84, block[1]); // name: Huffman, 30 bits in 4 bytes instead of 5
        Assert.Equal(0x03, block[6]); // value: raw 3 bytes (Huffman would take 10)
    }

    [Fact]
    public void SetMaxDynamicTableSize_ShrinkThenGrow_EmitsMinimumThenFinal()
    {
        var encoder = new HpackEncoder();
        using var decoder = new HpackDecoder();
        Hpack.DecodeBlock(decoder, Hpack.EncodeBlock(encoder, s_request));
        Assert.True(encoder.DynamicTable.Count > 0);

        encoder.SetMaxDynamicTableSize(0);
        encoder.SetMaxDynamicTableSize(4096);
        var block = Hpack.EncodeBlock(encoder, s_request);
        Assert.Equal("203fe11f", Convert.ToHexStringLower(block.AsSpan(0, 4)));
        Assert.Equal(s_request, Hpack.DecodeBlock(decoder, block));
        Assert.Equal(decoder.DynamicTable.Size, encoder.DynamicTable.Size);
    }

    [Fact]
    public void SetMaxDynamicTableSize_Shrink_EmitsOneUpdateAndTablesAgree()
    {
        var encoder = new HpackEncoder();
        using var decoder = new HpackDecoder();
        Hpack.DecodeBlock(decoder, Hpack.EncodeBlock(encoder, s_request));
        encoder.SetMaxDynamicTableSize(256);
        var block = Hpack.EncodeBlock(encoder, s_request);
        Assert.Equal("3fe101", Convert.ToHexStringLower(block.AsSpan(0, 3)));
        Assert.Equal(s_request, Hpack.DecodeBlock(decoder, block));
        Assert.Equal(256, decoder.DynamicTable.MaxSize);
        Assert.Equal(decoder.DynamicTable.Size, encoder.DynamicTable.Size);
        // No further update in the following block.
        Assert.NotEqual(0x20, Hpack.EncodeBlock(encoder, s_request)[0] & 0xE0);
    }

    [Fact]
    public void SetMaxDynamicTableSize_PeerAllowsMoreThanCap_NoUpdate()
    {
        var encoder = new HpackEncoder();
        encoder.SetMaxDynamicTableSize(65536);
        var block = Hpack.EncodeBlock(encoder, [(":method", "GET")]);
        Assert.Equal("82", Convert.ToHexStringLower(block));
    }

    [Fact]
    public void Constructor_CapBelowDefault_FirstBlockAnnouncesIt()
    {
        var encoder = new HpackEncoder(new HpackEncoderOptions { MaxDynamicTableSize = 0 });
        using var decoder = new HpackDecoder();
        var block = Hpack.EncodeBlock(encoder, s_request);
        Assert.Equal(0x20, block[0]);
        Assert.Equal(s_request, Hpack.DecodeBlock(decoder, block));
        Assert.Equal(0, decoder.DynamicTable.MaxSize);
        Assert.Equal(0, encoder.DynamicTable.Count);
    }

    [Fact]
    public void EncodeHeader_ExplicitNeverIndexed_OverridesPolicy()
    {
        var encoder = new HpackEncoder();
        var output = new ArrayBufferWriter<byte>();
        encoder.EncodeHeader(output, ":method"u8, "GET"u8, HpackIndexing.NeverIndexed);
        Assert.Equal(0x12, output.WrittenSpan[0]); // never indexed, name index 2
    }

    private sealed class NeverIndexedProbe(HpackDecoder decoder) : IHpackHeaderHandler
    {
        public bool SawNeverIndexed { get; private set; }

        public void OnHeader(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value) => SawNeverIndexed |= decoder.IsNeverIndexed;

        public void OnStaticIndexedHeader(int index) => SawNeverIndexed |= decoder.IsNeverIndexed;

        public void OnStaticIndexedHeader(int index, ReadOnlySpan<byte> value) => SawNeverIndexed |= decoder.IsNeverIndexed;
    }
}
