using Proxy.Core.Configuration;

namespace Proxy.Core.Tests.Configuration;

public sealed class TlsConfigTests : IDisposable
{
    private readonly string _cert = TempFile();
    private readonly string _key = TempFile();
    private readonly string _ca = TempFile();

    public void Dispose()
    {
        File.Delete(_cert);
        File.Delete(_key);
        File.Delete(_ca);
    }

    private static string TempFile()
    {
        var path = Path.GetTempFileName();
        File.WriteAllText(path, "not checked by the loader: only existence is");
        return path;
    }

    private static ConfigResult Load(string json, params (string Flag, string Value)[] flags)
        => ConfigLoader.Load(flags.ToDictionary(f => f.Flag, f => f.Value), json);

    private static string Json(string s) => "\"" + System.Text.Encodings.Web.JavaScriptEncoder.Default.Encode(s) + "\"";

    private string Config(string listenerTls, string serviceTls = "", string protocol = "http") => $$"""
    {
      "outboundListen": "off", "inboundListen": "off", "adminListen": "off",
      "services": [ { "name": "web", "endpoints": ["127.0.0.1:9001"] {{(serviceTls.Length == 0 ? "" : ", \"tls\": " + serviceTls)}} } ],
      "listeners": [ { "name": "edge", "address": "127.0.0.1:0", "service": "web", "protocol": "{{protocol}}"
                       {{(listenerTls.Length == 0 ? "" : ", \"tls\": " + listenerTls)}} } ]
    }
    """;

    [Fact]
    public void Load_ListenerTls_AllKeysRead()
    {
        var result = Load(Config($$"""{ "certificate": {{Json(_cert)}}, "key": {{Json(_key)}}, "alpn": ["http/1.1"], "clientCertificate": "required", "ca": {{Json(_ca)}} }"""));
        Assert.True(result.Ok, string.Join("\n", result.Errors));
        var tls = result.Config!.Listeners[0].Tls!;
        Assert.Equal(_cert, tls.CertificatePath);
        Assert.Equal(_key, tls.KeyPath);
        Assert.Equal(["http/1.1"], tls.Alpn);
        Assert.Equal(TlsClientCertificateMode.Required, tls.ClientCertificate);
        Assert.Equal(_ca, tls.CaPath);
    }

    [Theory]
    [InlineData("http", "h2,http/1.1")]
    [InlineData("tcp", "")]
    public void Load_ListenerTlsWithoutAlpn_DefaultsByProtocol(string protocol, string expected)
    {
        var result = Load(Config($$"""{ "certificate": {{Json(_cert)}}, "key": {{Json(_key)}} }""", protocol: protocol));
        Assert.True(result.Ok, string.Join("\n", result.Errors));
        Assert.Equal(expected, string.Join(",", result.Config!.Listeners[0].Tls!.Alpn));
        Assert.Equal(TlsClientCertificateMode.None, result.Config.Listeners[0].Tls!.ClientCertificate);
    }

    [Fact]
    public void Load_ListenerTlsErrors_EveryOneNamed()
    {
        var result = Load(Config("""{ "certificate": "/nonexistent/cert.pem", "alpn": ["h2", "h2"], "clientCertificate": "sometimes", "ciphers": "all" }"""));
        Assert.False(result.Ok);
        Assert.Contains("listeners[0].tls.ciphers: unknown key (known: certificate, key, alpn, clientCertificate, ca)", result.Errors);
        Assert.Contains("listeners[0].tls.certificate: no such file: /nonexistent/cert.pem", result.Errors);
        Assert.Contains("listeners[0].tls.key: missing (a PEM file path)", result.Errors);
        Assert.Contains("listeners[0].tls.alpn[1]: \"h2\" is listed twice", result.Errors);
        Assert.Contains("listeners[0].tls.clientCertificate: \"sometimes\" is not one of none, optional, required", result.Errors);
    }

    [Fact]
    public void Load_ListenerCaWithoutClientCertificates_Error()
    {
        var result = Load(Config($$"""{ "certificate": {{Json(_cert)}}, "key": {{Json(_key)}}, "ca": {{Json(_ca)}} }"""));
        Assert.Contains("listeners[0].tls.ca: only used to check client certificates; set clientCertificate to optional or required", result.Errors);
    }

    [Fact]
    public void Load_ServiceTls_AllKeysRead()
    {
        var result = Load(Config("", $$"""{ "sni": "web.example", "alpn": ["h2"], "ca": {{Json(_ca)}}, "certificate": {{Json(_cert)}}, "key": {{Json(_key)}} }"""));
        Assert.True(result.Ok, string.Join("\n", result.Errors));
        var tls = result.Config!.Services[0].Tls!;
        Assert.Equal("web.example", tls.Sni);
        Assert.Equal(["h2"], tls.Alpn!);
        Assert.Equal(_ca, tls.CaPath);
        Assert.Equal(_cert, tls.CertificatePath);
        Assert.Equal(_key, tls.KeyPath);
        Assert.False(tls.InsecureSkipVerify);
    }

    [Fact]
    public void Load_ServiceTlsEmpty_SystemTrustNoSniAlpnByProtocol()
    {
        var result = Load(Config("", "{}"));
        Assert.True(result.Ok, string.Join("\n", result.Errors));
        var tls = result.Config!.Services[0].Tls!;
        Assert.Null(tls.Sni);
        Assert.Null(tls.Alpn);
        Assert.Null(tls.CaPath);
    }

    [Fact]
    public void Load_ServiceTlsErrors_EveryOneNamed()
    {
        var result = Load(Config("", $$"""{ "sni": "a b", "certificate": {{Json(_cert)}}, "insecureSkipVerify": "yes", "verify": true }"""));
        Assert.False(result.Ok);
        Assert.Contains("services[0].tls.verify: unknown key (known: sni, alpn, ca, certificate, key, insecureSkipVerify)", result.Errors);
        Assert.Contains("services[0].tls.sni: \"a b\" is not a host name", result.Errors);
        Assert.Contains("services[0].tls.insecureSkipVerify: must be true or false", result.Errors);
    }

    [Fact]
    public void Load_ServiceCertificateWithoutKey_Error()
    {
        var result = Load(Config("", $$"""{ "certificate": {{Json(_cert)}} }"""));
        Assert.Contains("services[0].tls.key: missing (a client certificate needs its key)", result.Errors);
    }

    [Fact]
    public void HandshakeTimeout_FlagAndFileKey_DefaultTenSeconds()
    {
        Assert.Equal(TimeSpan.FromSeconds(10), Load(Config("")).Config!.Tls.HandshakeTimeout);
        Assert.Equal(TimeSpan.FromSeconds(3), Load(Config("").Replace("\"adminListen\": \"off\",", "\"adminListen\": \"off\", \"tls\": { \"handshakeTimeout\": \"3s\" },", StringComparison.Ordinal)).Config!.Tls.HandshakeTimeout);
        Assert.Equal(TimeSpan.FromMilliseconds(500), Load(Config(""), ("tls-handshake-timeout", "500ms")).Config!.Tls.HandshakeTimeout);
        Assert.Contains("tls.bogus: unknown key", Load(Config("").Replace("\"adminListen\": \"off\",", "\"adminListen\": \"off\", \"tls\": { \"bogus\": 1 },", StringComparison.Ordinal)).Errors);
    }

    [Fact]
    public void ConfigJson_WithTls_RoundTrips()
    {
        var json = Config(
            $$"""{ "certificate": {{Json(_cert)}}, "key": {{Json(_key)}}, "clientCertificate": "optional", "ca": {{Json(_ca)}} }""",
            $$"""{ "sni": "web.example", "ca": {{Json(_ca)}} }""");
        var first = Load(json).Config!;
        var written = ConfigJson.ToJson(first);
        Assert.Contains("\"handshakeTimeout\": \"10s\"", written, StringComparison.Ordinal);
        var second = Load(written);
        Assert.True(second.Ok, string.Join("\n", second.Errors));
        Assert.Equal(written, ConfigJson.ToJson(second.Config!));
        Assert.Equal(first.Listeners[0].Tls!.CaPath, second.Config!.Listeners[0].Tls!.CaPath);
        Assert.Equal("web.example", second.Config.Services[0].Tls!.Sni);
    }
}
