using System.Net;
using Proxy.Core.Configuration;

namespace Proxy.Core.Tests.Configuration;

/// <summary>The service key <c>dns</c> and the global <c>dns</c> section / <c>--dns-server</c>, <c>--dns-timeout</c>.</summary>
public sealed class DnsConfigTests
{
    private static ConfigResult Load(string json, Dictionary<string, string>? flags = null)
        => ConfigLoader.Load(flags ?? [], json);

    [Fact]
    public void ServiceDns_EveryKeyRead_EndpointsOptional_RoundTripsThroughConfigJson()
    {
        var result = Load("""
            { "dns": { "servers": ["127.0.0.1:5353", "10.0.0.10"], "timeout": "500ms" },
              "services": [
                { "name": "a", "dns": { "name": "api.example.internal.", "port": 8080, "type": "a", "minRefresh": "1s", "maxRefresh": "30s" },
                  "subsets": { "v2": ["10.1.0.7:8080"] } },
                { "name": "b", "endpoints": ["127.0.0.1:1"], "dns": { "name": "_http._tcp.b.example", "type": "srv" } } ] }
            """);
        Assert.True(result.Ok, string.Join("\n", result.Errors));
        var config = result.Config!;
        Assert.Equal([IPEndPoint.Parse("127.0.0.1:5353"), IPEndPoint.Parse("10.0.0.10:53")], config.Dns.Servers);
        Assert.Equal(TimeSpan.FromMilliseconds(500), config.Dns.Timeout);
        var a = config.Services[0];
        Assert.Empty(a.Endpoints);
        Assert.Equal(new ServiceDnsConfig("api.example.internal") { Port = 8080, Type = DnsRecordKind.A, MinRefresh = TimeSpan.FromSeconds(1), MaxRefresh = TimeSpan.FromSeconds(30) }, a.Dns);
        Assert.Equal(new ServiceDnsConfig("_http._tcp.b.example") { Type = DnsRecordKind.Srv }, config.Services[1].Dns);

        var written = ConfigJson.ToJson(config);
        var again = Load(written);
        Assert.True(again.Ok, string.Join("\n", again.Errors));
        Assert.Equal(written, ConfigJson.ToJson(again.Config!));
        Assert.Contains("\"servers\": \"127.0.0.1:5353,10.0.0.10:53\"", written, StringComparison.Ordinal);
        Assert.Contains("\"type\": \"srv\"", written, StringComparison.Ordinal);
    }

    [Fact]
    public void Defaults_SystemServers_TwoSeconds_IpRecords()
    {
        var result = Load("""{ "services": [ { "name": "a", "dns": { "name": "a.example", "port": 80 } } ] }""");
        Assert.True(result.Ok, string.Join("\n", result.Errors));
        Assert.Empty(result.Config!.Dns.Servers);
        Assert.Equal(TimeSpan.FromSeconds(2), result.Config.Dns.Timeout);
        var dns = result.Config.Services[0].Dns!;
        Assert.Equal(DnsRecordKind.Ip, dns.Type);
        Assert.Equal(TimeSpan.FromSeconds(5), dns.MinRefresh);
        Assert.Equal(TimeSpan.FromMinutes(5), dns.MaxRefresh);
    }

    [Fact]
    public void Flags_DnsServerAndTimeout_OverrideTheFile()
    {
        var result = Load("""{ "dns": { "servers": "10.0.0.1" } }""", new() { ["dns-server"] = "[::1]:5300,127.0.0.2", ["dns-timeout"] = "3s" });
        Assert.True(result.Ok, string.Join("\n", result.Errors));
        Assert.Equal([IPEndPoint.Parse("[::1]:5300"), IPEndPoint.Parse("127.0.0.2:53")], result.Config!.Dns.Servers);
        Assert.Equal(TimeSpan.FromSeconds(3), result.Config.Dns.Timeout);
        Assert.Equal("system", Setting.All.Single(static s => s.Flag == "dns-server").Default);
    }

    [Theory]
    [InlineData("""{ "name": "a.example" }""", "services[0].dns.port: missing")]
    [InlineData("""{ "name": "_x._tcp.a", "type": "srv", "port": 80 }""", "services[0].dns.port: not used with type srv")]
    [InlineData("""{ "name": "a.example", "port": 0 }""", "services[0].dns.port: must be a port number from 1 to 65535, not 0")]
    [InlineData("""{ "name": "a example", "port": 80 }""", "services[0].dns.name: \"a example\" is not a DNS name")]
    [InlineData("""{ "name": "a.example", "port": 80, "type": "mx" }""", "services[0].dns.type: \"mx\" is not a record type (ip, a, aaaa, srv)")]
    [InlineData("""{ "name": "a.example", "port": 80, "minRefresh": "10ms" }""", "services[0].dns.minRefresh: must be at least 100ms")]
    [InlineData("""{ "name": "a.example", "port": 80, "minRefresh": "10s", "maxRefresh": "5s" }""", "services[0].dns.maxRefresh: 5s is below minRefresh 10s")]
    [InlineData("""{ "name": "a.example", "port": 80, "ttl": 3 }""", "services[0].dns.ttl: unknown key")]
    [InlineData("\"a.example\"", "services[0].dns: must be an object")]
    public void BadServiceDns_NamesTheKey(string dns, string error)
    {
        var result = Load($$"""{ "services": [ { "name": "a", "dns": {{dns}} } ] }""");
        Assert.False(result.Ok);
        Assert.Contains(result.Errors, e => e.StartsWith(error, StringComparison.Ordinal));
    }

    [Fact]
    public void BadServers_NameTheFlagAndTheKey()
    {
        var flag = Load("{}", new() { ["dns-server"] = "dns.example:53" });
        Assert.Contains(flag.Errors, static e => e.StartsWith("--dns-server: ", StringComparison.Ordinal));
        var file = Load("""{ "dns": { "servers": ["127.0.0.1:99999"] } }""");
        Assert.Contains(file.Errors, static e => e.StartsWith("dns.servers: ", StringComparison.Ordinal));
    }

    [Fact]
    public void ServiceWithoutEndpointsOrDns_StillAnError()
    {
        var result = Load("""{ "services": [ { "name": "a", "endpoints": [] } ] }""");
        Assert.Contains(result.Errors, static e => e.StartsWith("services[0].endpoints: must list at least one endpoint", StringComparison.Ordinal));
    }
}
