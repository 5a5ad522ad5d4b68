using System.Text;
using Proxy.Core.Detection;

namespace Proxy.Core.Tests.Detection;

public sealed class ProtocolClassifierTests
{
    private static readonly byte[] Preface = Encoding.ASCII.GetBytes("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

    /// <summary>A real-looking TLS 1.2-record ClientHello start: record header, handshake type 1, then body bytes.</summary>
    internal static readonly byte[] ClientHello = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xFC, 0x03, 0x03, 0xAA, 0xBB];

    public static TheoryData<string, Protocol> Messages() => new()
    {
        { "GET / HTTP/1.1\r\nHost: a\r\n\r\n", Protocol.Http1 },
        { "POST /submit HTTP/1.1\r\n", Protocol.Http1 },
        { "PUT /x HTTP/1.0\r\n", Protocol.Http1 },
        { "HEAD / HTTP/1.1\r\n", Protocol.Http1 },
        { "DELETE /a HTTP/1.1\r\n", Protocol.Http1 },
        { "OPTIONS * HTTP/1.1\r\n", Protocol.Http1 },
        { "PATCH /p HTTP/1.1\r\n", Protocol.Http1 },
        { "CONNECT example.com:443 HTTP/1.1\r\n", Protocol.Http1 },
        { "TRACE / HTTP/1.1\r\n", Protocol.Http1 },
        { "GET http://a/ HTTP/1.1\r\n", Protocol.Http1 },
        { "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", Protocol.Http2 },
    };

    [Theory]
    [MemberData(nameof(Messages))]
    public void TryClassify_WholeMessage_Decides(string message, Protocol expected)
    {
        Assert.True(ProtocolClassifier.TryClassify(Encoding.ASCII.GetBytes(message), out var protocol));
        Assert.Equal(expected, protocol);
    }

    [Theory]
    [InlineData("PROPFIND /dav HTTP/1.1\r\n")]
    [InlineData("M-SEARCH * HTTP/1.1\r\n")]
    [InlineData("PRI /not-the-preface HTTP/1.1\r\n")]
    [InlineData("get / HTTP/1.1\r\n")]
    public void TryClassify_UnknownTokenMethodWithOriginOrAsteriskTarget_IsHttp1(string message)
    {
        Assert.True(ProtocolClassifier.TryClassify(Encoding.ASCII.GetBytes(message), out var protocol));
        Assert.Equal(Protocol.Http1, protocol);
    }

    [Theory]
    [MemberData(nameof(Messages))]
    public void TryClassify_EveryPrefix_NeedsMoreOrAgrees(string message, Protocol expected)
    {
        var bytes = Encoding.ASCII.GetBytes(message);
        for (var n = 0; n <= bytes.Length; n++)
        {
            if (ProtocolClassifier.TryClassify(bytes.AsSpan(0, n), out var protocol))
            {
                // Once decided, the answer is the final one and stays the same with more bytes.
                Assert.Equal(expected, protocol);
                for (var m = n; m <= bytes.Length; m++)
                {
                    Assert.True(ProtocolClassifier.TryClassify(bytes.AsSpan(0, m), out var later));
                    Assert.Equal(expected, later);
                }

                return;
            }
        }

        Assert.Fail($"never decided on the whole of \"{message}\"");
    }

    [Theory]
    [InlineData("GET / HTTP/1.1", 5)]
    [InlineData("OPTIONS * HTTP/1.1", 9)]
    [InlineData("CONNECT a:1 HTTP/1.1", 9)]
    public void TryClassify_Http1_DecidesExactlyAtFirstTargetChar(string message, int decidingLength)
    {
        var bytes = Encoding.ASCII.GetBytes(message);
        for (var n = 0; n < decidingLength; n++)
        {
            Assert.False(ProtocolClassifier.TryClassify(bytes.AsSpan(0, n), out var protocol), $"prefix of {n} bytes");
            Assert.Equal(Protocol.Opaque, protocol);
        }

        Assert.True(ProtocolClassifier.TryClassify(bytes.AsSpan(0, decidingLength), out var decided));
        Assert.Equal(Protocol.Http1, decided);
    }

    [Fact]
    public void TryClassify_EveryPrefixOfPreface_NeedsMore()
    {
        for (var n = 0; n < Preface.Length; n++)
        {
            Assert.False(ProtocolClassifier.TryClassify(Preface.AsSpan(0, n), out _), $"prefix of {n} bytes");
        }

        Assert.True(ProtocolClassifier.TryClassify(Preface, out var protocol));
        Assert.Equal(Protocol.Http2, protocol);
        Assert.Equal(ProtocolClassifier.MaxBytes, Preface.Length);
    }

    [Fact]
    public void TryClassify_PrefaceWithAnyByteChanged_IsNotHttp2()
    {
        for (var i = 0; i < Preface.Length; i++)
        {
            var bytes = (byte[])Preface.Clone();
            bytes[i] ^= 0x20;
            var decided = ProtocolClassifier.TryClassify(bytes, out var protocol);
            Assert.True(decided, $"byte {i} changed");
            Assert.NotEqual(Protocol.Http2, protocol);
        }
    }

    [Fact]
    public void TryClassify_Http1PrefaceLookalike_IsHttp1()
    {
        // Diverges from the preface after "PRI ": a PRI request line, which HTTP/1 rules accept as a token method.
        Assert.True(ProtocolClassifier.TryClassify("PRI * HTTP/1.1\r\n\r\n"u8, out var protocol));
        Assert.Equal(Protocol.Http1, protocol);
    }

    [Fact]
    public void TryClassify_EveryPrefixOfClientHello_NeedsMoreThenTls()
    {
        for (var n = 0; n < 6; n++)
        {
            Assert.False(ProtocolClassifier.TryClassify(ClientHello.AsSpan(0, n), out _), $"prefix of {n} bytes");
        }

        for (var n = 6; n <= ClientHello.Length; n++)
        {
            Assert.True(ProtocolClassifier.TryClassify(ClientHello.AsSpan(0, n), out var protocol));
            Assert.Equal(Protocol.Tls, protocol);
        }
    }

    [Theory]
    [InlineData(0x00)]
    [InlineData(0x01)]
    [InlineData(0x02)]
    [InlineData(0x03)]
    [InlineData(0x04)]
    public void TryClassify_ClientHelloOfEveryRecordVersion_IsTls(byte minor)
    {
        byte[] bytes = [0x16, 0x03, minor, 0x00, 0x30, 0x01];
        Assert.True(ProtocolClassifier.TryClassify(bytes, out var protocol));
        Assert.Equal(Protocol.Tls, protocol);
    }

    [Fact]
    public void TryClassify_TlsHeaderWithEveryOtherByteValue_IsOpaque()
    {
        for (var value = 0; value < 256; value++)
        {
            var b = (byte)value;
            if (b != 0x03)
            {
                AssertOpaque([0x16, b], "version major");
            }

            if (b > 0x04)
            {
                AssertOpaque([0x16, 0x03, b], "version minor");
            }

            if (b != 0x01)
            {
                AssertOpaque([0x16, 0x03, 0x03, 0x00, 0x30, b], "handshake type");
            }

            if (b > 0x40)
            {
                AssertOpaque([0x16, 0x03, 0x03, b], "length high byte");
            }
        }

        AssertOpaque([0x16, 0x03, 0x03, 0x00, 0x00], "zero length");
        AssertOpaque([0x16, 0x03, 0x03, 0x40, 0x01], "length over 2^14");
        Assert.False(ProtocolClassifier.TryClassify([0x16, 0x03, 0x03, 0x40, 0x00], out _));
        Assert.False(ProtocolClassifier.TryClassify([0x16, 0x03, 0x03, 0x40], out _));
    }

    [Theory]
    [InlineData("SSH-2.0-OpenSSH_9.6\r\n")]
    [InlineData("SET key value\r\n")]
    [InlineData("get key\r\n")]
    [InlineData("PING\r\n")]
    [InlineData("*1\r\n$4\r\nPING\r\n")]
    [InlineData("GET\r\n")]
    [InlineData("GET  / HTTP/1.1")]
    [InlineData("GET \r\n")]
    [InlineData(" GET / HTTP/1.1")]
    [InlineData("G\u00C9T / HTTP/1.1")]
    [InlineData("ABCDEFGHIJKLMNOPQRSTUVWXYZ")]
    public void TryClassify_NotHttpNotTls_IsOpaque(string text)
    {
        AssertOpaque(Encoding.Latin1.GetBytes(text), text);
    }

    [Fact]
    public void TryClassify_UnknownTokenSplitBeforeSpace_IsOpaque()
    {
        // Documented decision: only prefixes of known methods wait for more bytes.
        AssertOpaque("PROPF"u8.ToArray(), "unknown token without SP");
        Assert.False(ProtocolClassifier.TryClassify("PROPFIND "u8, out _));
    }

    [Fact]
    public void TryClassify_UnknownTokenFillingMaxBytes_Decides()
    {
        var bytes = Encoding.ASCII.GetBytes(new string('X', ProtocolClassifier.MaxBytes - 1) + " ");
        AssertOpaque(bytes, "23 token chars and SP");
    }

    [Fact]
    public void TryClassify_EmptyInput_NeedsMore()
    {
        Assert.False(ProtocolClassifier.TryClassify([], out var protocol));
        Assert.Equal(Protocol.Opaque, protocol);
    }

    [Fact]
    public void TryClassify_AnyInputOfMaxBytes_AlwaysDecides()
    {
        var random = new Random(1234);
        var bytes = new byte[ProtocolClassifier.MaxBytes];
        for (var i = 0; i < 20_000; i++)
        {
            random.NextBytes(bytes);

            // Bias some inputs toward the interesting starts so the random walk reaches deep branches.
            switch (i % 4)
            {
                case 1:
                    bytes[0] = 0x16;
                    bytes[1] = 0x03;
                    break;
                case 2:
                    for (var j = 0; j < bytes.Length; j++)
                    {
                        bytes[j] = (byte)('A' + (bytes[j] % 26));
                    }

                    bytes[random.Next(bytes.Length)] = (byte)' ';
                    break;
                case 3:
                    Preface.AsSpan(0, random.Next(Preface.Length)).CopyTo(bytes);
                    break;
            }

            Assert.True(ProtocolClassifier.TryClassify(bytes, out _), Convert.ToHexString(bytes));
        }
    }

    [Fact]
    public void TryClassify_EveryTokenCharAsMethod_IsHttp1WithOriginForm()
    {
        for (var value = 0; value < 256; value++)
        {
            byte[] bytes = [(byte)value, (byte)' ', (byte)'/'];
            var decided = ProtocolClassifier.TryClassify(bytes, out var protocol);
            var isToken = value < 128 && (char.IsAsciiLetterOrDigit((char)value) || "!#$%&'*+-.^_`|~".Contains((char)value, StringComparison.Ordinal));
            Assert.True(decided);
            Assert.Equal(isToken ? Protocol.Http1 : Protocol.Opaque, protocol);
        }
    }

    private static void AssertOpaque(byte[] bytes, string what)
    {
        Assert.True(ProtocolClassifier.TryClassify(bytes, out var protocol), what);
        Assert.Equal(Protocol.Opaque, protocol);
    }
}
