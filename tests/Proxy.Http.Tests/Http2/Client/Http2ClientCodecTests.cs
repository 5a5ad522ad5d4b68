using System.Buffers;
using System.Text;
using Proxy.Http.Http2.Client;
using Proxy.Http.Http2.Hpack;
using Proxy.Http.Http2.Translation;

namespace Proxy.Http.Tests.Http2.Client;

/// <summary>The socket-free pieces of the client: field list, request block encoding, response block validation.</summary>
public sealed class Http2ClientCodecTests
{
    private static byte[] Encode(params (string Name, string Value)[] fields)
    {
        using var list = ClientExchange.Fields(fields);
        var block = new ArrayBufferWriter<byte>();
        Http2ClientConnection.EncodeFieldBlock(new HpackEncoder(), block, list, includePseudo: true);
        return block.WrittenSpan.ToArray();
    }

    private static (Http2FieldError Error, int Status, List<(string, string)> Fields) Collect(byte[] block, bool trailers, int pieceSize)
    {
        using var decoder = new HpackDecoder();
        using var fields = new Http2FieldList();
        var collector = new Http2ResponseCollector();
        collector.Begin(fields, trailers);
        var sink = new Http2ResponseSink(collector);
        for (var offset = 0; offset < block.Length; offset += pieceSize)
        {
            var size = Math.Min(pieceSize, block.Length - offset);
            decoder.Decode(block.AsSpan(offset, size), offset + size == block.Length, ref sink);
        }

        return (collector.Complete(), collector.Status, ClientExchange.ToList(fields));
    }

    [Fact]
    public void FieldList_AddManyAndClear_KeepsOrderAndSize()
    {
        using var list = new Http2FieldList();
        for (var i = 0; i < 100; i++)
        {
            list.Add(Encoding.ASCII.GetBytes("name" + i), Encoding.ASCII.GetBytes(new string('v', i)));
        }

        Assert.Equal(100, list.Count);
        Assert.Equal("name57", Encoding.ASCII.GetString(list.GetName(57)));
        Assert.Equal(57, list.GetValue(57).Length);
        Assert.True(list.TryGetValue("name3"u8, out var value));
        Assert.Equal("vvv", Encoding.ASCII.GetString(value));
        Assert.False(list.TryGetValue("nope"u8, out _));
        Assert.Throws<ArgumentOutOfRangeException>(() => list.GetName(100));

        list.Clear();
        Assert.Equal(0, list.Count);
        Assert.Equal(0, list.HeaderListSize);
    }

    [Fact]
    public void EncodeFieldBlock_PseudoHeadersGivenLast_EncodedFirstAndNamesLowercased()
    {
        var block = Encode(("Accept", "*/*"), (":method", "GET"), ("x-b", "2"), (":path", "/p"), (":scheme", "http"), (":authority", "a"));

        var decoded = new List<(string, string)>();
        using var decoder = new HpackDecoder();
        var sink = new ListSink(decoded);
        decoder.Decode(block, endHeaders: true, ref sink);

        Assert.Equal([(":method", "GET"), (":path", "/p"), (":scheme", "http"), (":authority", "a"), ("accept", "*/*"), ("x-b", "2")], decoded);
    }

    public static TheoryData<int> PieceSizes => new() { 1, 2, 3, 7, 1000 };

    [Theory]
    [MemberData(nameof(PieceSizes))]
    public void Collector_ValidHeadSplitAnywhere_SameFields(int pieceSize)
    {
        var block = Encode((":status", "404"), ("content-type", "text/html"), ("set-cookie", "a=b"), ("x-long", new string('x', 300)));

        var (error, status, fields) = Collect(block, trailers: false, pieceSize);

        Assert.Equal(Http2FieldError.None, error);
        Assert.Equal(404, status);
        Assert.Equal([("content-type", "text/html"), ("set-cookie", "a=b"), ("x-long", new string('x', 300))], fields);
    }

    [Theory]
    [InlineData(":status", "200", Http2FieldError.PseudoHeaderInTrailers)]
    [InlineData("connection", "close", Http2FieldError.ConnectionSpecific)]
    [InlineData("x-ok", " padded", Http2FieldError.InvalidValue)]
    public void Collector_BadTrailers_Refused(string name, string value, Http2FieldError expected)
    {
        var block = Encode((name, value));

        Assert.Equal(expected, Collect(block, trailers: true, 1000).Error);
        Assert.Equal(expected, Collect(block, trailers: true, 1).Error);
    }

    [Theory]
    [InlineData("099")]
    [InlineData("2000")]
    [InlineData("2x0")]
    [InlineData("")]
    public void Collector_BadStatus_InvalidStatus(string status)
    {
        Assert.Equal(Http2FieldError.InvalidStatus, Collect(Encode((":status", status)), trailers: false, 1000).Error);
    }

    [Fact]
    public void Collector_Trailers_NoStatusNeeded()
    {
        var (error, status, fields) = Collect(Encode(("grpc-status", "0")), trailers: true, 1);

        Assert.Equal(Http2FieldError.None, error);
        Assert.Equal(0, status);
        Assert.Equal([("grpc-status", "0")], fields);
    }

    private readonly struct ListSink(List<(string, string)> list) : IHpackHeaderHandler
    {
        public void OnHeader(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value) => list.Add((Encoding.ASCII.GetString(name), Encoding.ASCII.GetString(value)));

        public void OnStaticIndexedHeader(int index) => OnHeader(HpackStaticTable.Name(index), HpackStaticTable.Value(index));

        public void OnStaticIndexedHeader(int index, ReadOnlySpan<byte> value) => OnHeader(HpackStaticTable.Name(index), value);
    }
}
