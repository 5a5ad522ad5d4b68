using System.Buffers;
using Proxy.Http.Http1;

namespace Proxy.Http.Tests.Http1;

public sealed class Http1HeadWriterTests
{
    [Fact]
    public void WriteRequestHead_ChunkedHttp11Request_ReemittedWithoutHopByHop()
    {
        var text = "POST /api?x=1 HTTP/1.1\r\nHost: svc\r\nConnection: keep-alive, X-Hop\r\nX-Hop: secret\r\nKeep-Alive: 5\r\n" +
            "Transfer-Encoding: chunked\r\nTE: trailers\r\nX-End: 1\r\n\r\n";
        using var head = new Http1RequestHead();
        Assert.True(new Http1RequestHeadParser().TryParse(TestSequences.Single(TestSequences.Ascii(text)), head, out _));
        var writer = new ArrayBufferWriter<byte>();
        Http1HeadWriter.WriteRequestHead(writer, head, "X-Forwarded-For: 10.0.0.1\r\n"u8);
        Assert.Equal(
            "POST /api?x=1 HTTP/1.1\r\nHost: svc\r\nX-End: 1\r\nTransfer-Encoding: chunked\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n",
            TestSequences.Text(writer.WrittenSpan));
    }

    [Fact]
    public void WriteRequestHead_Http10Request_ForwardedAsHttp11()
    {
        using var head = new Http1RequestHead();
        Assert.True(new Http1RequestHeadParser().TryParse(TestSequences.Single(TestSequences.Ascii("GET / HTTP/1.0\r\nAccept: */*\r\n\r\n")), head, out _));
        var writer = new ArrayBufferWriter<byte>();
        Http1HeadWriter.WriteRequestHead(writer, head);
        Assert.Equal("GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", TestSequences.Text(writer.WrittenSpan));
    }

    [Fact]
    public void WriteRequestHead_WebSocketUpgrade_KeepsUpgradeSemantics()
    {
        var text = "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n";
        using var head = new Http1RequestHead();
        Assert.True(new Http1RequestHeadParser().TryParse(TestSequences.Single(TestSequences.Ascii(text)), head, out _));
        var writer = new ArrayBufferWriter<byte>();
        Http1HeadWriter.WriteRequestHead(writer, head);
        Assert.Equal(
            "GET /ws HTTP/1.1\r\nHost: h\r\nSec-WebSocket-Version: 13\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
            TestSequences.Text(writer.WrittenSpan));
    }

    [Fact]
    public void WriteRequestHead_Output_ParsesBackToTheSameEndToEndFields()
    {
        var text = "PUT /x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nProxy-Connection: keep-alive\r\nX-A: 1\r\nx-b:2\r\n\r\n";
        using var head = new Http1RequestHead();
        var parser = new Http1RequestHeadParser();
        Assert.True(parser.TryParse(TestSequences.Single(TestSequences.Ascii(text)), head, out _));
        var writer = new ArrayBufferWriter<byte>();
        Http1HeadWriter.WriteRequestHead(writer, head);
        using var again = new Http1RequestHead();
        Assert.True(parser.TryParse(new ReadOnlySequence<byte>(writer.WrittenMemory), again, out _));
        Assert.Equal(Http1BodyKind.ContentLength, again.BodyKind);
        Assert.Equal(3, again.ContentLength);
        Assert.Equal(4, again.Headers.Count);
        Assert.Equal("x-b", TestSequences.Text(again.Headers.GetName(3)));
        Assert.Equal("2", TestSequences.Text(again.Headers.GetValue(3)));
        Assert.Equal(-1, again.Headers.IndexOf("Proxy-Connection"u8));
    }

    [Fact]
    public void WriteResponseHead_101_KeepsUpgradeAndDropsOtherHopByHop()
    {
        var text = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        using var head = new Http1ResponseHead();
        Assert.True(new Http1ResponseHeadParser().TryParse(TestSequences.Single(TestSequences.Ascii(text)), Http1Method.Get, head, out _));
        var writer = new ArrayBufferWriter<byte>();
        Http1HeadWriter.WriteResponseHead(writer, head);
        Assert.Equal(
            "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
            TestSequences.Text(writer.WrittenSpan));
    }

    [Fact]
    public void WriteResponseHead_ChunkedResponseWithExtras_Reemitted()
    {
        var text = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nKeep-Alive: timeout=5\r\nContent-Type: text/plain\r\n\r\n";
        using var head = new Http1ResponseHead();
        Assert.True(new Http1ResponseHeadParser().TryParse(TestSequences.Single(TestSequences.Ascii(text)), Http1Method.Get, head, out _));
        var writer = new ArrayBufferWriter<byte>();
        Http1HeadWriter.WriteResponseHead(writer, head, "X-Proxy: 1\r\n"u8);
        Assert.Equal("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\nX-Proxy: 1\r\n\r\n", TestSequences.Text(writer.WrittenSpan));
    }

    [Fact]
    public void WriteStatusLine_FormatsThreeDigitsAndReason()
    {
        var writer = new ArrayBufferWriter<byte>();
        Http1HeadWriter.WriteStatusLine(writer, Http1Version.Http10, 503, "Service Unavailable"u8);
        Http1HeadWriter.WriteHeader(writer, "X-Reason"u8, "no_healthy_upstream"u8);
        Http1HeadWriter.WriteEndOfHead(writer);
        Assert.Equal("HTTP/1.0 503 Service Unavailable\r\nX-Reason: no_healthy_upstream\r\n\r\n", TestSequences.Text(writer.WrittenSpan));
        Assert.Throws<ArgumentOutOfRangeException>(() => Http1HeadWriter.WriteStatusLine(writer, Http1Version.Http11, 99, default));
    }

    [Fact]
    public void WriteRequestHead_SteadyState_AllocatesNothing()
    {
        using var head = new Http1RequestHead();
        var bytes = TestSequences.Ascii("GET /a HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\nAccept: */*\r\n\r\n");
        Assert.True(new Http1RequestHeadParser().TryParse(TestSequences.Single(bytes), head, out _));
        var writer = new ArrayBufferWriter<byte>(4096);
        Http1HeadWriter.WriteRequestHead(writer, head);
        writer.ResetWrittenCount();
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 100; i++)
        {
            Http1HeadWriter.WriteRequestHead(writer, head, "X-F: 1\r\n"u8);
            writer.ResetWrittenCount();
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }
}
