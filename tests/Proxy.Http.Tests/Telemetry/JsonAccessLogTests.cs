using System.Text;
using System.Text.Json;
using Proxy.Core.Metrics;
using Proxy.Http.Forwarding;
using Proxy.Http.Telemetry;
using static Proxy.Http.Tests.Telemetry.TelemetryTestHelpers;

namespace Proxy.Http.Tests.Telemetry;

public sealed class JsonAccessLogTests : IDisposable
{
    private static readonly DateTimeOffset Now = new(2026, 11, 26, 9, 5, 7, 42, TimeSpan.FromHours(2));

    private readonly string _directory = Directory.CreateTempSubdirectory("proxy-access-log-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    private static JsonAccessLogOptions Manual => new() { FlushInterval = Timeout.InfiniteTimeSpan };

    [Fact]
    public async Task Write_UpstreamServedRequest_LineHasEveryField()
    {
        using var sink = new ControlledStream();
        var log = new JsonAccessLog(sink, ownsStream: false, timeProvider: new FixedTime(Now), options: Manual);

        log.Write(Ok(ms: 2.5) with { RequestBytes = 4, ResponseBytes = 13, Attempts = 2 });
        await log.DisposeAsync().AsTask().WaitAsync(TestTimeout);

        var line = Assert.Single(Lines(sink.Written()));
        using var json = JsonDocument.Parse(line);
        var root = json.RootElement;
        Assert.Equal("2026-11-26T07:05:07.042Z", root.GetProperty("time").GetString());
        Assert.Equal("outbound", root.GetProperty("listener").GetString());
        Assert.Equal("127.0.0.1:51000", root.GetProperty("client").GetString());
        Assert.Equal("GET", root.GetProperty("method").GetString());
        Assert.Equal("api.example.com", root.GetProperty("authority").GetString());
        Assert.Equal("/items?id=7", root.GetProperty("path").GetString());
        Assert.Equal("HTTP/1.1", root.GetProperty("protocol").GetString());
        Assert.Equal(200, root.GetProperty("status").GetInt32());
        Assert.Equal(4, root.GetProperty("request_bytes").GetInt64());
        Assert.Equal(13, root.GetProperty("response_bytes").GetInt64());
        Assert.Equal(2.5, root.GetProperty("duration_ms").GetDouble());
        Assert.Equal(1.25, root.GetProperty("upstream_ms").GetDouble());
        Assert.Equal("api", root.GetProperty("service").GetString());
        Assert.Equal("v2", root.GetProperty("subset").GetString());
        Assert.Equal("r1", root.GetProperty("route").GetString());
        Assert.Equal("10.1.2.3:8080", root.GetProperty("upstream").GetString());
        Assert.Equal(JsonValueKind.Null, root.GetProperty("error").ValueKind);
        Assert.False(root.GetProperty("proxy_made").GetBoolean());
        Assert.Equal(2, root.GetProperty("attempts").GetInt32());
        Assert.Equal(19, root.EnumerateObject().Count());
        Assert.False(root.TryGetProperty("request_id", out _));
        Assert.EndsWith("}", line, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Write_RequestId_LoggedWhenKnown_EscapedWhenHostile()
    {
        using var sink = new ControlledStream();
        var log = new JsonAccessLog(sink, ownsStream: false, timeProvider: new FixedTime(Now), options: Manual);

        log.Write(Ok(ms: 1) with { RequestId = "5f0c6a9e-3b1d-4c2e-9a7f-0d1e2f3a4b5c"u8 });
        log.Write(Ok(ms: 1) with { RequestId = "a\"b\n"u8 });
        await log.DisposeAsync().AsTask().WaitAsync(TestTimeout);

        var lines = Lines(sink.Written()).ToArray();
        Assert.Equal(2, lines.Length);
        using var first = JsonDocument.Parse(lines[0]);
        Assert.Equal("5f0c6a9e-3b1d-4c2e-9a7f-0d1e2f3a4b5c", first.RootElement.GetProperty("request_id").GetString());
        using var second = JsonDocument.Parse(lines[1]);
        Assert.Equal("a\"b\n", second.RootElement.GetProperty("request_id").GetString());
    }

    [Fact]
    public async Task Write_ProxyMadeResponse_ReasonAndNulls()
    {
        using var sink = new ControlledStream();
        var log = new JsonAccessLog(sink, ownsStream: false, timeProvider: new FixedTime(Now), options: Manual);

        log.Write(ProxyMade(404, ProxyErrors.NoRoute, routed: false, service: "unknown", route: "") with { Client = ClientV6 });
        await log.DisposeAsync().AsTask().WaitAsync(TestTimeout);

        using var json = JsonDocument.Parse(Assert.Single(Lines(sink.Written())));
        var root = json.RootElement;
        Assert.Equal(404, root.GetProperty("status").GetInt32());
        Assert.Equal("no_route", root.GetProperty("error").GetString());
        Assert.True(root.GetProperty("proxy_made").GetBoolean());
        Assert.Equal("[::1]:40000", root.GetProperty("client").GetString());
        Assert.Equal(JsonValueKind.Null, root.GetProperty("upstream").ValueKind);
        Assert.Equal(JsonValueKind.Null, root.GetProperty("upstream_ms").ValueKind);
        Assert.Equal(JsonValueKind.Null, root.GetProperty("subset").ValueKind);
        Assert.Equal("", root.GetProperty("route").GetString());
        Assert.Equal("unknown", root.GetProperty("service").GetString());
        Assert.Equal(0, root.GetProperty("attempts").GetInt32());
    }

    [Fact]
    public async Task Write_BadRequestWithoutHead_EmptyFieldsAreNull()
    {
        using var sink = new ControlledStream();
        var log = new JsonAccessLog(sink, ownsStream: false, timeProvider: new FixedTime(Now), options: Manual);

        log.Write(new HttpRequestRecord { Listener = "inbound", Service = "unknown", Route = "", StatusCode = 400, Error = ProxyErrors.BadRequest, ProxyMade = true });
        await log.DisposeAsync().AsTask().WaitAsync(TestTimeout);

        using var json = JsonDocument.Parse(Assert.Single(Lines(sink.Written())));
        var root = json.RootElement;
        foreach (var name in (string[])["client", "method", "authority", "path", "protocol"])
        {
            Assert.Equal(JsonValueKind.Null, root.GetProperty(name).ValueKind);
        }

        Assert.Equal("bad_request", root.GetProperty("error").GetString());
    }

    [Fact]
    public async Task Write_HostileBytesInPathAndAuthority_EscapedAndStillOneJsonLine()
    {
        using var sink = new ControlledStream();
        var log = new JsonAccessLog(sink, ownsStream: false, timeProvider: new FixedTime(Now), options: Manual);
        byte[] target = [.. "/a\"b\\c"u8, 0x01, (byte)'\n', (byte)'\r', 0x7F, .. "/é/"u8, 0xFF, (byte)'x', 0xC3, (byte)'}'];
        byte[] authority = [.. "evil\"},{\"x\":\""u8, 0x00, 0xFE];

        log.Write(Ok() with { Target = target, Authority = authority });
        log.Write(Ok());
        await log.DisposeAsync().AsTask().WaitAsync(TestTimeout);

        var output = sink.Written();
        Assert.True(System.Text.Unicode.Utf8.IsValid(output));
        var lines = Lines(output);
        Assert.Equal(2, lines.Length); // the newline in the path did not split the entry
        using var json = JsonDocument.Parse(lines[0]);
        Assert.Equal("/a\"b\\c\u0001\n\r\u007F/é/\uFFFDx\uFFFD}", json.RootElement.GetProperty("path").GetString());
        Assert.Equal("evil\"},{\"x\":\"\0\uFFFD", json.RootElement.GetProperty("authority").GetString());
        Assert.Equal(19, json.RootElement.EnumerateObject().Count());
        using var second = JsonDocument.Parse(lines[1]);
        Assert.Equal("/items?id=7", second.RootElement.GetProperty("path").GetString());
    }

    [Fact]
    public async Task Write_SlowSink_DropsAndCountsWithoutBlocking()
    {
        using var metrics = new ProxyMetrics();
        using var exporter = new PrometheusExporter(metrics.Meter);
        using var sink = new ControlledStream();
        sink.Block();
        var log = new JsonAccessLog(sink, ownsStream: false, metrics, new FixedTime(Now), new JsonAccessLogOptions { BufferSize = 4096, FlushInterval = TimeSpan.FromMilliseconds(5) });

        // The first entry reaches the writer thread, which then hangs in the sink's Write.
        log.Write(Ok());
        await sink.WriteStarted.Task.WaitAsync(TestTimeout);

        // Meanwhile 100 more entries (about 40 KB) arrive: the 4 KiB buffer keeps some, the rest are dropped, none blocks.
        await Task.Run(() =>
        {
            for (var i = 0; i < 100; i++)
            {
                log.Write(Ok() with { Attempts = i + 1 });
            }
        }).WaitAsync(TestTimeout);

        var dropped = log.Dropped;
        Assert.InRange(dropped, 80, 99);
        Assert.Contains($"proxy_access_log_dropped_total {dropped}\n", exporter.Render(), StringComparison.Ordinal);

        sink.Release();
        await log.DisposeAsync().AsTask().WaitAsync(TestTimeout);

        var lines = Lines(sink.Written());
        Assert.Equal(101 - dropped, lines.Length);
        Assert.Equal(lines.Length, log.Written);
        for (var i = 1; i < lines.Length; i++)
        {
            // The kept ones are the first that arrived, in order, whole.
            using var json = JsonDocument.Parse(lines[i]);
            Assert.Equal(i, json.RootElement.GetProperty("attempts").GetInt32());
        }
    }

    [Fact]
    public async Task Write_EntryLargerThanBuffer_Dropped()
    {
        using var sink = new ControlledStream();
        var log = new JsonAccessLog(sink, ownsStream: false, options: Manual with { BufferSize = 1024 });

        log.Write(Ok() with { Target = Encoding.ASCII.GetBytes("/" + new string('a', 5000)) });
        log.Write(Ok());
        await log.DisposeAsync().AsTask().WaitAsync(TestTimeout);

        Assert.Equal(1, log.Dropped);
        Assert.Single(Lines(sink.Written()));
    }

    [Fact]
    public async Task Write_FlushInterval_WritesWithoutDispose()
    {
        using var sink = new ControlledStream();
        var log = new JsonAccessLog(sink, ownsStream: false, options: new JsonAccessLogOptions { FlushInterval = TimeSpan.FromMilliseconds(20) });

        log.Write(Ok());
        await sink.WriteStarted.Task.WaitAsync(TestTimeout);

        Assert.Equal(0, log.Dropped);
        await log.DisposeAsync().AsTask().WaitAsync(TestTimeout);
        Assert.Single(Lines(sink.Written()));
    }

    [Fact]
    public async Task Write_HalfFullBuffer_WakesWriterBeforeInterval()
    {
        using var sink = new ControlledStream();
        var log = new JsonAccessLog(sink, ownsStream: false, options: Manual with { BufferSize = 4096 });

        for (var i = 0; i < 10 && !sink.WriteStarted.Task.IsCompleted; i++)
        {
            log.Write(Ok()); // about 400 bytes each: the sixth passes 2 KiB
        }

        await sink.WriteStarted.Task.WaitAsync(TestTimeout);
        await log.DisposeAsync().AsTask().WaitAsync(TestTimeout);
        Assert.Equal(0, log.Dropped);
    }

    [Fact]
    public async Task DisposeAsync_BufferedEntries_Flushed()
    {
        using var sink = new ControlledStream();
        var log = new JsonAccessLog(sink, ownsStream: false, options: Manual);

        log.Write(Ok());
        log.Write(Ok());
        log.Write(Ok());
        Assert.Equal(0, sink.Writes);

        await log.DisposeAsync().AsTask().WaitAsync(TestTimeout);

        Assert.Equal(3, Lines(sink.Written()).Length);
        Assert.Equal(3, log.Written);
    }

    [Fact]
    public async Task Write_AfterDispose_DroppedAndCounted()
    {
        using var sink = new ControlledStream();
        var log = new JsonAccessLog(sink, ownsStream: false, options: Manual);
        await log.DisposeAsync().AsTask().WaitAsync(TestTimeout);

        log.Write(Ok());

        Assert.Equal(1, log.Dropped);
        Assert.Empty(sink.Written());
        await log.DisposeAsync().AsTask().WaitAsync(TestTimeout); // a second dispose is harmless
    }

    [Fact]
    public async Task Write_SinkThrows_EntriesCountedAsDroppedAndWriterSurvives()
    {
        using var sink = new ControlledStream { ThrowOnWrite = new IOException("disk full") };
        var log = new JsonAccessLog(sink, ownsStream: false, options: new JsonAccessLogOptions { FlushInterval = TimeSpan.FromMilliseconds(5) });

        log.Write(Ok());
        log.Write(Ok());
        await sink.WriteStarted.Task.WaitAsync(TestTimeout);
        await log.DisposeAsync().AsTask().WaitAsync(TestTimeout);

        Assert.True(sink.Writes >= 1);
        Assert.Equal(2, log.Dropped);
        Assert.Equal(0, log.Written);
    }

    [Fact]
    public async Task Open_ExistingFile_Appends()
    {
        var path = Path.Combine(_directory, "access.log");
        await File.WriteAllTextAsync(path, "{\"existing\":true}\n").WaitAsync(TestTimeout);

        var first = JsonAccessLog.Open(path, timeProvider: new FixedTime(Now));
        first.Write(Ok());
        first.Write(Ok());
        await first.DisposeAsync().AsTask().WaitAsync(TestTimeout);
        var second = JsonAccessLog.Open(path, timeProvider: new FixedTime(Now));
        second.Write(ProxyMade(404, ProxyErrors.NoRoute, routed: false));
        await second.DisposeAsync().AsTask().WaitAsync(TestTimeout);

        var lines = await File.ReadAllLinesAsync(path).WaitAsync(TestTimeout);
        Assert.Equal(4, lines.Length);
        Assert.Equal("{\"existing\":true}", lines[0]);
        foreach (var line in lines)
        {
            using var _ = JsonDocument.Parse(line);
        }

        using var last = JsonDocument.Parse(lines[3]);
        Assert.Equal("no_route", last.RootElement.GetProperty("error").GetString());
    }

    [Fact]
    public async Task Open_MissingFile_Creates()
    {
        var path = Path.Combine(_directory, "new.log");

        var log = JsonAccessLog.Open(path);
        log.Write(Ok());
        await log.DisposeAsync().AsTask().WaitAsync(TestTimeout);

        Assert.Single(await File.ReadAllLinesAsync(path).WaitAsync(TestTimeout));
    }

    [Fact]
    public void Constructor_TinyBuffer_Throws()
    {
        using var sink = new ControlledStream();
        Assert.Throws<ArgumentOutOfRangeException>(() => new JsonAccessLog(sink, ownsStream: false, options: new JsonAccessLogOptions { BufferSize = 10 }));
    }

    [Fact]
    public async Task Write_SteadyState_AllocatesNothingOnTheCallingThread()
    {
        var log = new JsonAccessLog(Stream.Null, ownsStream: false, options: new JsonAccessLogOptions { BufferSize = 64 * 1024 });
        byte[] hostile = [.. "/x"u8, 0xFF]; // the invalid UTF-8 path (pooled char buffer) too
        for (var i = 0; i < 10; i++)
        {
            log.Write(Ok());
            log.Write(Ok() with { Target = hostile });
        }

        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 1000; i++)
        {
            log.Write(Ok());
            log.Write(Ok() with { Target = hostile });
        }

        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        await log.DisposeAsync().AsTask().WaitAsync(TestTimeout);

        Assert.Equal(0, allocated);
        Assert.Equal(2020, log.Written + log.Dropped);
    }

    [Fact]
    public async Task HttpTelemetry_WithAccessLog_WritesOneLinePerCompletedRequest()
    {
        using var metrics = new ProxyMetrics();
        using var sink = new ControlledStream();
        var log = new JsonAccessLog(sink, ownsStream: false, metrics, new FixedTime(Now), Manual);
        var telemetry = new HttpTelemetry(metrics, log);

        telemetry.OnRequestRouted("outbound", "api", "r1");
        telemetry.OnRequestCompleted(Ok());
        telemetry.OnRequestCompleted(ProxyMade(404, ProxyErrors.NoRoute, routed: false));
        await log.DisposeAsync().AsTask().WaitAsync(TestTimeout);

        var lines = Lines(sink.Written());
        Assert.Equal(2, lines.Length);
        using var json = JsonDocument.Parse(lines[1]);
        Assert.Equal("no_route", json.RootElement.GetProperty("error").GetString());
    }
}
