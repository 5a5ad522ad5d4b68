using Proxy.Http.Http2.Hpack;

namespace Proxy.Http.Tests.Http2.Hpack;

public sealed class HpackHuffmanTests
{
    [Theory]
    [InlineData("www.example.com", "f1e3c2e5f23a6ba0ab90f4ff")]                  // RFC 7541 C.4.1
    [InlineData("no-cache", "a8eb10649cbf")]                                     // C.4.2
    [InlineData("custom-key", "25a849e95ba97d7f")]                               // C.4.3
    [InlineData("custom-value", "25a849e95bb8e8b4bf")]                           // C.4.3
    [InlineData("302", "6402")]                                                  // C.6.1
    [InlineData("private", "aec3771a4b")]                                        // C.6.1
    [InlineData("Mon, 21 Oct 2013 20:13:21 GMT", "d07abe941054d444a8200595040b8166e082a62d1bff")] // C.6.1
    [InlineData("https://www.example.com", "9d29ad171863c78f0b97c8e9ae82ae43d3")] // C.6.1
    [InlineData("307", "640eff")]                                                // C.6.2
    [InlineData("gzip", "9bd9ab")]                                               // C.6.3
    [InlineData("foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1", "94e7821dd7f2e6c7b335dfdfcd5b3960d5af27087f3672c1ab270fb5291f9587316065c003ed4ee5b1063d5007")] // C.6.3
    [InlineData("", "")]
    public void EncodeDecode_RfcExamples_MatchWire(string text, string hex)
    {
        var plain = Hpack.Bytes(text);
        Assert.Equal(hex.Length / 2, HpackHuffman.EncodedLength(plain));
        var encoded = new byte[HpackHuffman.EncodedLength(plain)];
        Assert.Equal(encoded.Length, HpackHuffman.Encode(plain, encoded));
        Assert.Equal(hex, Convert.ToHexStringLower(encoded));

        var decoded = new byte[HpackHuffman.MaxDecodedLength(encoded.Length)];
        var n = HpackHuffman.Decode(encoded, decoded);
        Assert.Equal(text, Hpack.Text(decoded.AsSpan(0, n)));
    }

    [Fact]
    public void EncodeDecode_EveryByteValue_RoundTrips()
    {
        var all = new byte[256 * 3];
        for (var i = 0; i < all.Length; i++)
        {
            all[i] = (byte)(i * 7);
        }

        var encoded = new byte[HpackHuffman.EncodedLength(all)];
        HpackHuffman.Encode(all, encoded);
        var decoded = new byte[HpackHuffman.MaxDecodedLength(encoded.Length)];
        var n = HpackHuffman.Decode(encoded, decoded);
        Assert.Equal(all, decoded.AsSpan(0, n).ToArray());
    }

    [Fact]
    public void Codes_AreRfcValues()
    {
        Assert.Equal(0x1ff8u, HpackHuffman.Code(0));
        Assert.Equal(13, HpackHuffman.CodeLength(0));
        Assert.Equal(0x18u, HpackHuffman.Code('/'));
        Assert.Equal(0x3ffffeeu, HpackHuffman.Code(255));
        Assert.Equal(0x3fffffffu, HpackHuffman.Code(HpackHuffman.Eos));
        Assert.Equal(30, HpackHuffman.CodeLength(HpackHuffman.Eos));
    }

    [Theory]
    [InlineData("ffffffff")] // 30 ones: EOS inside the string
    [InlineData("1fff")]     // 'a' (00011) then 11 ones of padding: longer than 7 bits
    [InlineData("ff")]       // 8 bits of padding alone
    [InlineData("00")]       // '0' then 000 padding: not all ones
    public void Decode_InvalidPaddingOrEos_Throws(string hex)
    {
        var e = Assert.Throws<HpackDecodingException>(() => HpackHuffman.Decode(Hpack.Hex(hex), new byte[16]));
        Assert.Equal(HpackDecodingError.InvalidHuffman, e.Error);
    }

    [Fact]
    public void Decode_PaddingOfSevenOnes_IsAccepted()
    {
        // '0' is 00000; followed by 111 pads the byte: 00000111.
        var buffer = new byte[4];
        Assert.Equal(1, HpackHuffman.Decode([0x07], buffer));
        Assert.Equal((byte)'0', buffer[0]);
    }

    [Fact]
    public void Decode_PaddingOfSevenOnesAfterWholeByte_IsAccepted()
    {
        // '&' (8 bits) then '0' (5 bits) then 3 ones: 11111000 00000111.
        var buffer = new byte[4];
        Assert.Equal(2, HpackHuffman.Decode([0xf8, 0x07], buffer));
    }
}
