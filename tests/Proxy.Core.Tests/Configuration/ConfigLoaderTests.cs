using System.Net;
using Proxy.Core.Configuration;
using Proxy.Core.Tcp;

namespace Proxy.Core.Tests.Configuration;

public class ConfigLoaderTests
{
    private static readonly Dictionary<string, string> NoFlags = [];

    private static ConfigResult Load(string? json, params (string Flag, string Value)[] flags)
        => ConfigLoader.Load(flags.ToDictionary(f => f.Flag, f => f.Value), json);

    [Fact]
    public void Load_NothingGiven_EmbeddedDefaults()
    {
        var result = Load(null);
        Assert.True(result.Ok, string.Join("\n", result.Errors));
        var c = result.Config!;
        Assert.Equal(new IPEndPoint(IPAddress.IPv6Any, 15001), c.OutboundListen);
        Assert.Equal(new IPEndPoint(IPAddress.IPv6Any, 15006), c.InboundListen);
        Assert.Equal(new IPEndPoint(IPAddress.Loopback, 15000), c.AdminListen);
        Assert.Equal(TimeSpan.FromSeconds(5), c.Tcp.ConnectTimeout);
        Assert.Equal(SpliceMode.Auto, c.Tcp.Splice);
        Assert.Equal(1, c.Transport.IoThreads);
    }

    [Fact]
    public void Load_FileAndFlags_FlagsOverrideFile()
    {
        const string json = """
        {
          // comments are allowed
          "outboundListen": "127.0.0.1:0",
          "inboundListen": "off",
          "transport": { "backlog": 100, "noDelay": false, "ioThreads": 2 },
          "tcp": { "connectTimeout": "2s", "splice": "off" },
          "services": [ { "name": "db", "addresses": ["198.51.100.7:5432"], "endpoints": ["127.0.0.1:5432", "[::1]:5433"] } ],
          "listeners": [ { "name": "db-local", "address": "127.0.0.1:0", "service": "db" } ],
        }
        """;
        var result = Load(json, ("backlog", "200"), ("connect-timeout", "250ms"));
        Assert.True(result.Ok, string.Join("\n", result.Errors));
        var c = result.Config!;
        Assert.Equal(new IPEndPoint(IPAddress.Loopback, 0), c.OutboundListen);
        Assert.Null(c.InboundListen);
        Assert.Equal(200, c.Transport.Backlog);
        Assert.False(c.Transport.NoDelay);
        Assert.Equal(2, c.Transport.IoThreads);
        Assert.Equal(TimeSpan.FromMilliseconds(250), c.Tcp.ConnectTimeout);
        Assert.Equal(SpliceMode.Never, c.Tcp.Splice);
        var service = Assert.Single(c.Services);
        Assert.Equal([IPEndPoint.Parse("127.0.0.1:5432"), IPEndPoint.Parse("[::1]:5433")], service.Endpoints);
        Assert.Equal("db", Assert.Single(c.Listeners).Service);
    }

    [Fact]
    public void Load_Http2SectionAndFlags_DefaultsFileAndFlagOverride()
    {
        var defaults = Load(null).Config!.Http2;
        Assert.Equal((100, 256 * 1024, 1024 * 1024, 64 * 1024), (defaults.MaxConcurrentStreams, defaults.InitialStreamWindow, defaults.InitialConnectionWindow, defaults.MaxHeaderListSize));

        const string json = """{ "http2": { "maxConcurrentStreams": 50, "initialStreamWindow": 1048576, "initialConnectionWindow": 4194304, "maxHeaderListSize": 8192 } }""";
        var result = Load(json, ("http2-max-concurrent-streams", "7"));
        Assert.True(result.Ok, string.Join("\n", result.Errors));
        var c = result.Config!.Http2;
        Assert.Equal((7, 1048576, 4194304, 8192), (c.MaxConcurrentStreams, c.InitialStreamWindow, c.InitialConnectionWindow, c.MaxHeaderListSize));

        var bad = Load("""{ "http2": { "windows": 1 } }""");
        Assert.Contains("http2.windows: unknown key", bad.Errors);
    }

    [Theory]
    [InlineData("backlog", "abc", "--backlog: \"abc\" is not a whole number")]
    [InlineData("backlog", "0", "--backlog: 0 is out of range (1-65535)")]
    [InlineData("read-buffer-size", "10", "--read-buffer-size: 10 is out of range (1024-1048576)")]
    [InlineData("io-threads", "65", "--io-threads: 65 is out of range (0-64)")]
    [InlineData("no-delay", "yes", "--no-delay: \"yes\" is not true or false")]
    [InlineData("http2-max-concurrent-streams", "0", "--http2-max-concurrent-streams: 0 is out of range (1-10000)")]
    [InlineData("http2-stream-window", "1000", "--http2-stream-window: 1000 is out of range (65535-2147483647)")]
    [InlineData("http2-connection-window", "2147483648", "--http2-connection-window: ")]
    [InlineData("http2-max-header-list", "100", "--http2-max-header-list: 100 is out of range (1024-16777216)")]
    [InlineData("connect-timeout", "5", "--connect-timeout: \"5\" is not a duration")]
    [InlineData("connect-timeout", "off", "--connect-timeout: \"off\" is not a duration")]
    [InlineData("splice", "maybe", "--splice: \"maybe\" is not one of auto, on, off")]
    [InlineData("outbound-listen", "15001", "--outbound-listen: \"15001\" is not an address with a port")]
    [InlineData("outbound-listen", "1.2.3.4:70000", "--outbound-listen: \"1.2.3.4:70000\" has no valid port")]
    [InlineData("admin-listen", "localhost:15000", "--admin-listen: \"localhost:15000\" does not start with an IP address")]
    [InlineData("log-level", "loud", "--log-level: \"loud\" is not one of")]
    [InlineData("nonsense", "1", "--nonsense: unknown flag")]
    public void Load_BadFlag_ErrorNamesTheFlag(string flag, string value, string expected)
    {
        var result = Load(null, (flag, value));
        Assert.False(result.Ok);
        Assert.Contains(result.Errors, e => e.StartsWith(expected, StringComparison.Ordinal));
    }

    [Fact]
    public void Load_ManyBadKeys_ReportsEveryErrorAtOnce()
    {
        const string json = """
        {
          "outbondListen": "[::]:1",
          "transport": { "backlog": "x", "readBuffer": 5 },
          "tcp": { "idleTimeout": true, "maxConnections": -1 },
          "services": [
            { "name": "a", "addresses": ["10.0.0.1"], "endpoints": [] },
            { "name": "a", "endpoints": ["127.0.0.1:0", 7], "weight": 3 },
            { "addresses": [], "endpoints": ["127.0.0.1:1"] }
          ],
          "listeners": [ { "name": "l", "address": "127.0.0.1:9", "service": "missing" }, { "name": "l", "address": "127.0.0.1:9", "service": "a" } ]
        }
        """;
        var errors = Load(json, ("backlog", "-3")).Errors;
        string[] expected =
        [
            "outbondListen: unknown key",
            "transport.backlog: \"x\" is not a whole number",
            "transport.readBuffer: unknown key",
            "tcp.idleTimeout: \"true\" is not a duration",
            "tcp.maxConnections: \"-1\" is not a whole number",
            "services[0].addresses[0]: \"10.0.0.1\" is not an address with a port",
            "services[0].endpoints: must list at least one endpoint",
            "services[1].weight: unknown key",
            "services[1].endpoints[0]: \"127.0.0.1:0\" has no valid port (1-65535)",
            "services[1].endpoints[1]: must be a string",
            "services[2].name: missing",
            "listeners[0].service: no service is named \"missing\"",
            "listeners[1].name: \"l\" is already used by another listener",
            "listeners[1].address: 127.0.0.1:9 collides with listeners[0].address",
            "--backlog: \"-3\" is not a whole number",
        ];
        foreach (var e in expected)
        {
            Assert.Contains(errors, actual => actual.StartsWith(e, StringComparison.Ordinal));
        }
    }

    [Theory]
    [InlineData("[1,2]", "config file: the top level must be a JSON object")]
    [InlineData("{ \"backlog\": ", "config file: not valid JSON")]
    [InlineData("{ \"services\": {} }", "services: must be an array")]
    [InlineData("{ \"tcp\": 5 }", "tcp: must be an object")]
    public void Load_MalformedFile_ClearError(string json, string expected)
    {
        var result = Load(json);
        Assert.False(result.Ok);
        Assert.StartsWith(expected, result.Errors[0], StringComparison.Ordinal);
    }

    [Fact]
    public void Load_DuplicateVirtualAddress_Rejected()
    {
        const string json = """
        { "services": [
            { "name": "a", "addresses": ["198.51.100.1:80"], "endpoints": ["127.0.0.1:1"] },
            { "name": "b", "addresses": ["198.51.100.1:80"], "endpoints": ["127.0.0.1:2"] } ] }
        """;
        var result = Load(json);
        Assert.Equal("services[1].addresses[0]: 198.51.100.1:80 already belongs to service \"a\"", Assert.Single(result.Errors));
    }

    [Fact]
    public void Load_CaptureListenersOnSamePort_Collide()
    {
        var result = Load(null, ("inbound-listen", "127.0.0.1:15001"));
        Assert.Contains("inboundListen: 127.0.0.1:15001 collides with outboundListen ([::]:15001)", result.Errors);
    }

    [Fact]
    public void ToJson_RoundTripsThroughLoader()
    {
        const string json = """
        { "tcp": { "idleTimeout": "off", "connectTimeout": "1500ms" },
          "services": [ { "name": "a", "addresses": ["[2001:db8::1]:80"], "endpoints": ["127.0.0.1:1"] } ],
          "listeners": [ { "name": "x", "address": "127.0.0.1:0", "service": "a" } ] }
        """;
        var first = Load(json).Config!;
        var written = ConfigJson.ToJson(first);
        var second = Load(written);
        Assert.True(second.Ok, string.Join("\n", second.Errors));
        Assert.Equal(written, ConfigJson.ToJson(second.Config!));
        Assert.Contains("\"idleTimeout\": \"off\"", written, StringComparison.Ordinal);
        Assert.Contains("\"connectTimeout\": \"1500ms\"", written, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("250ms", 250)]
    [InlineData("5s", 5000)]
    [InlineData("1.5s", 1500)]
    [InlineData("2m", 120000)]
    [InlineData("1h", 3600000)]
    public void ParseDuration_Units(string text, int ms)
    {
        Assert.Null(ValueParsers.ParseDuration(text, allowOff: false, out var value));
        Assert.Equal(TimeSpan.FromMilliseconds(ms), value);
    }

    [Theory]
    [InlineData(":15001", "[::]:15001")]
    [InlineData("[::]:15001", "[::]:15001")]
    [InlineData("0.0.0.0:80", "0.0.0.0:80")]
    [InlineData("[::1]:0", "[::1]:0")]
    public void ParseListenAddress_Forms(string text, string expected)
    {
        Assert.Null(ValueParsers.ParseListenAddress(text, out var ep));
        Assert.Equal(expected, ep!.ToString());
    }
}
