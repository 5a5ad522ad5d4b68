using Proxy.Core.Configuration;

namespace Proxy.Core.Tests.Configuration;

public sealed class MeshConfigTests
{
    private static ConfigResult Load(string json, params (string Flag, string Value)[] flags)
        => ConfigLoader.Load(flags.ToDictionary(f => f.Flag, f => f.Value), json);

    private static string Config(string mesh = "", string serviceMesh = "", string listenerMesh = "", string listenerExtra = "") => $$"""
    {
      "outboundListen": "off", "inboundListen": "off", "adminListen": "off"
      {{(mesh.Length == 0 ? "" : ", \"mesh\": " + mesh)}},
      "services": [ { "name": "web", "endpoints": ["127.0.0.1:9001"] {{(serviceMesh.Length == 0 ? "" : ", \"mesh\": " + serviceMesh)}} } ],
      "listeners": [ { "name": "edge", "address": "127.0.0.1:0", "service": "web", "protocol": "http"
                       {{(listenerMesh.Length == 0 ? "" : ", \"mesh\": " + listenerMesh)}} {{listenerExtra}} } ]
    }
    """;

    private const string Identity = """{ "certificate": "/etc/mesh/tls.crt", "key": "/etc/mesh/tls.key", "trustBundle": "/etc/mesh/ca.crt" }""";

    [Fact]
    public void Defaults_MeshOff_EveryPortDisabled()
    {
        var config = new ProxyConfig();
        Assert.False(config.Mesh.Enabled);
        Assert.Equal(MeshMode.Disable, config.Mesh.ModeFor(8080));
        Assert.True(config.Mesh.Http2);
    }

    [Fact]
    public void Load_FullSection_EveryKeyRead()
    {
        var result = Load(Config(
            """{ "certificate": "/c.pem", "key": "/k.pem", "trustBundle": "/ca.pem", "mode": "strict", "ports": { "8080": "permissive", "3306": "disable" }, "http2": false }""",
            serviceMesh: """{ "identity": "spiffe://cluster.local/ns/shop/*" }""",
            listenerMesh: "\"permissive\""));
        Assert.True(result.Ok, string.Join("\n", result.Errors));
        var mesh = result.Config!.Mesh;
        Assert.True(mesh.Enabled);
        Assert.Equal(("/c.pem", "/k.pem", "/ca.pem"), (mesh.CertificatePath, mesh.KeyPath, mesh.TrustBundlePath));
        Assert.False(mesh.Http2);
        Assert.Equal(MeshMode.Strict, mesh.ModeFor(9000));
        Assert.Equal(MeshMode.Permissive, mesh.ModeFor(8080));
        Assert.Equal(MeshMode.Disable, mesh.ModeFor(3306));
        Assert.Equal("spiffe://cluster.local/ns/shop/*", result.Config.Services[0].Mesh!.Identity);
        Assert.Equal(MeshMode.Permissive, result.Config.Listeners[0].Mesh);
    }

    [Fact]
    public void Load_ServiceMeshTrue_AnyMeshIdentity()
    {
        var result = Load(Config(Identity, serviceMesh: "true"));
        Assert.True(result.Ok, string.Join("\n", result.Errors));
        Assert.Equal("*", result.Config!.Services[0].Mesh!.Identity);
        Assert.Equal(MeshMode.Permissive, result.Config.Mesh.Mode);
    }

    [Fact]
    public void Load_ServiceMeshFalse_NotMeshed()
    {
        var result = Load(Config(Identity, serviceMesh: "false"));
        Assert.True(result.Ok, string.Join("\n", result.Errors));
        Assert.Null(result.Config!.Services[0].Mesh);
    }

    [Fact]
    public void Flags_SetTheIdentityAndOverrideTheFile()
    {
        var result = Load(Config("""{ "mode": "strict" }"""), ("mesh-certificate", "/c"), ("mesh-key", "/k"), ("mesh-trust-bundle", "/b"), ("mesh-mode", "permissive"), ("mesh-http2", "false"));
        Assert.True(result.Ok, string.Join("\n", result.Errors));
        Assert.Equal(MeshMode.Permissive, result.Config!.Mesh.Mode);
        Assert.Equal("/b", result.Config.Mesh.TrustBundlePath);
        Assert.False(result.Config.Mesh.Http2);
    }

    [Theory]
    [InlineData("""{ "certificate": "/c", "key": "/k" }""", "", "", "mesh.trustBundle: missing (mesh.certificate, mesh.key given")]
    [InlineData("""{ "mode": "strict" }""", "", "", "mesh.mode: strict needs the mesh identity")]
    [InlineData("""{ "ports": { "8080": "strict" } }""", "", "", "mesh.ports.8080: strict needs the mesh identity")]
    [InlineData("""{ "mode": "on" }""", "", "", "mesh.mode: \"on\" is not one of strict, permissive, disable")]
    [InlineData("""{ "ports": { "http": "strict" } }""", "", "", "mesh.ports.http: \"http\" is not a port")]
    [InlineData("""{ "ports": { "70000": "strict" } }""", "", "", "mesh.ports.70000: \"70000\" is not a port")]
    [InlineData("""{ "ports": { "80": "loose" } }""", "", "", "mesh.ports.80: \"loose\" is not one of")]
    [InlineData("""{ "ports": [80] }""", "", "", "mesh.ports: must be an object")]
    [InlineData("""{ "colour": "blue" }""", "", "", "mesh.colour: unknown key")]
    [InlineData("", "true", "", "services[0].mesh: needs the mesh identity")]
    [InlineData("", "", "\"strict\"", "listeners[0].mesh: needs the mesh identity")]
    [InlineData(Identity, "\"yes\"", "", "services[0].mesh: must be true, false or")]
    [InlineData(Identity, """{ "identity": "web" }""", "", "services[0].mesh.identity: \"web\" is not a SPIFFE ID")]
    [InlineData(Identity, """{ "identity": "spiffe://td/ns/*/sa/x" }""", "", "services[0].mesh.identity: \"spiffe://td/ns/*/sa/x\": '*' may only be")]
    [InlineData(Identity, """{ "identities": ["x"] }""", "", "services[0].mesh.identities: unknown key")]
    [InlineData(Identity, "", "\"disable\"", "listeners[0].mesh: \"disable\" is not one of strict, permissive")]
    public void Load_Invalid_ErrorNamesTheKey(string mesh, string serviceMesh, string listenerMesh, string expected)
    {
        var result = Load(Config(mesh, serviceMesh, listenerMesh));
        Assert.False(result.Ok);
        Assert.Contains(result.Errors, e => e.StartsWith(expected, StringComparison.Ordinal));
    }

    [Fact]
    public void Load_ListenerMeshAndTls_Refused()
    {
        var result = Load(Config(Identity, listenerMesh: "\"strict\"", listenerExtra: """, "tls": { "certificate": "/etc/hostname", "key": "/etc/hostname" }"""));
        Assert.False(result.Ok);
        Assert.Contains(result.Errors, e => e.StartsWith("listeners[0].mesh: a listener terminates either its own tls or mesh mTLS", StringComparison.Ordinal));
    }

    [Fact]
    public void ToJson_MeshSection_RoundTrips()
    {
        var first = Load(Config(
            """{ "certificate": "/c.pem", "key": "/k.pem", "trustBundle": "/ca.pem", "mode": "strict", "ports": { "8080": "permissive" }, "http2": false }""",
            serviceMesh: """{ "identity": "spiffe://cluster.local/ns/shop/sa/app" }""",
            listenerMesh: "\"strict\""));
        Assert.True(first.Ok, string.Join("\n", first.Errors));
        var json = ConfigJson.ToJson(first.Config!);
        var second = Load(json);
        Assert.True(second.Ok, string.Join("\n", second.Errors) + "\n" + json);
        Assert.Equal(json, ConfigJson.ToJson(second.Config!));
        Assert.Equal(MeshMode.Permissive, second.Config!.Mesh.ModeFor(8080));
        Assert.Equal("spiffe://cluster.local/ns/shop/sa/app", second.Config.Services[0].Mesh!.Identity);
        Assert.Equal(MeshMode.Strict, second.Config.Listeners[0].Mesh);
    }

    [Fact]
    public void Routes_SourcePrincipals_ReadAndRoundTrip()
    {
        var first = Load("""
            { "outboundListen": "off", "inboundListen": "off", "adminListen": "off",
              "services": [ { "name": "web", "endpoints": ["127.0.0.1:9001"] } ],
              "listeners": [ { "name": "edge", "address": "127.0.0.1:0", "routes": [
                { "name": "frontend", "match": { "sourcePrincipals": ["spiffe://cluster.local/ns/web/*", "*/sa/admin"] }, "action": { "service": "web" } } ] } ] }
            """);
        Assert.True(first.Ok, string.Join("\n", first.Errors));
        Assert.Equal(["spiffe://cluster.local/ns/web/*", "*/sa/admin"], first.Config!.Listeners[0].Routes[0].Match.SourcePrincipals);
        var json = ConfigJson.ToJson(first.Config);
        var second = Load(json);
        Assert.True(second.Ok, string.Join("\n", second.Errors) + "\n" + json);
        Assert.Equal(json, ConfigJson.ToJson(second.Config!));
    }

    [Fact]
    public void ToJson_MeshOff_RoundTripsAsOff()
    {
        var json = ConfigJson.ToJson(new ProxyConfig());
        var again = Load(json);
        Assert.True(again.Ok, string.Join("\n", again.Errors));
        Assert.False(again.Config!.Mesh.Enabled);
    }
}
