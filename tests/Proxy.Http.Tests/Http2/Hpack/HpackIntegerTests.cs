using Proxy.Http.Http2.Hpack;

namespace Proxy.Http.Tests.Http2.Hpack;

public sealed class HpackIntegerTests
{
    [Theory]
    [InlineData(10, 5, "0a")]      // RFC 7541 C.1.1
    [InlineData(1337, 5, "1f9a0a")] // C.1.2
    [InlineData(42, 8, "2a")]      // C.1.3
    [InlineData(31, 5, "1f00")]    // exactly the prefix maximum needs one zero continuation byte
    [InlineData(int.MaxValue, 7, "7f80ffffff07")]
    public void Encode_RfcExamples_MatchWireAndDecodeBack(int value, int prefix, string hex)
    {
        Span<byte> buffer = stackalloc byte[HpackInteger.MaxEncodedLength];
        var written = HpackInteger.Encode(value, prefix, 0, buffer);
        Assert.Equal(hex, Convert.ToHexStringLower(buffer[..written]));
        Assert.Equal(written, HpackInteger.EncodedLength(value, prefix));

        Assert.True(HpackInteger.TryDecode(buffer[..written], prefix, out var decoded, out var consumed));
        Assert.Equal(value, decoded);
        Assert.Equal(written, consumed);
    }

    [Fact]
    public void TryDecode_EveryPrefix_ReportsIncompleteAndConsumesNothing()
    {
        var bytes = Hpack.Hex("1f9a0a");
        for (var i = 0; i < bytes.Length; i++)
        {
            Assert.False(HpackInteger.TryDecode(bytes.AsSpan(0, i), 5, out _, out var consumed));
            Assert.Equal(0, consumed);
        }
    }

    [Fact]
    public void Decode_FlagBitsAbovePrefix_AreIgnored()
    {
        Assert.True(HpackInteger.TryDecode([0xea], 5, out var value, out _));
        Assert.Equal(10, value);
    }

    [Theory]
    [InlineData("7f80808080808001")] // more continuation bytes than an int can need
    [InlineData("7f8180808008")]     // 2^31 + 126: above int.MaxValue
    [InlineData("7fffffffff0f")]     // far above int.MaxValue in the fifth continuation byte
    [InlineData("1f8000")]           // redundant zero continuation (non-minimal encoding of 31)
    [InlineData("1f9a8a00")]         // 1337 with a redundant trailing group
    public void TryDecode_OverflowOrRedundantBytes_Throws(string hex)
    {
        var prefix = hex.StartsWith("7f", StringComparison.Ordinal) ? 7 : 5;
        var e = Assert.Throws<HpackDecodingException>(() => HpackInteger.TryDecode(Hpack.Hex(hex), prefix, out _, out _));
        Assert.Equal(HpackDecodingError.IntegerOverflow, e.Error);
    }

    [Fact]
    public void Encode_DestinationTooShort_ReturnsZero()
    {
        Span<byte> buffer = stackalloc byte[2];
        Assert.Equal(0, HpackInteger.Encode(1337, 5, 0, buffer));
    }
}
