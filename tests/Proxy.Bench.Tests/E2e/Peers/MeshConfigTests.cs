using System.Net;
using System.Text.Json;
using Proxy.Bench.E2e.Infrastructure;
using Proxy.Bench.E2e.Peers;
using Proxy.Tls.Ca;
using Proxy.Tls.Identity;

namespace Proxy.Bench.Tests.E2e.Peers;

/// <summary>The two-hop mesh scenario's configuration templates (sidecar JSON, haproxy.cfg) and certificate files.</summary>
public sealed class MeshConfigTests
{
    private const string Hop2Identity = "spiffe://cluster.local/ns/bench/sa/hop2";
    private static readonly IPEndPoint Backend = new(IPAddress.Loopback, 40001);
    private static readonly IPEndPoint Hop1Listen = new(IPAddress.Loopback, 40011);
    private static readonly IPEndPoint Hop1Ready = new(IPAddress.Loopback, 40012);
    private static readonly IPEndPoint Hop2Listen = new(IPAddress.Loopback, 40021);
    private static readonly IPEndPoint Hop2Ready = new(IPAddress.Loopback, 40022);
    private static readonly MeshTlsFiles Hop1Tls = new("/c/hop1/tls.crt", "/c/hop1/tls.key", "/c/ca/ca.crt");
    private static readonly MeshTlsFiles Hop2Tls = new("/c/hop2/tls.crt", "/c/hop2/tls.key", "/c/ca/ca.crt");

    [Fact]
    public void SidecarHop2_Mtls_StrictListenerForAppWithMeshFiles()
    {
        using var json = JsonDocument.Parse(MeshSidecarConfig.BuildHop2(Hop2Ready, Hop2Listen, Backend, Hop2Tls));
        var root = json.RootElement;
        var listener = Assert.Single(root.GetProperty("listeners").EnumerateArray());
        var service = Assert.Single(root.GetProperty("services").EnumerateArray());
        var mesh = root.GetProperty("mesh");

        Assert.Equal("off", root.GetProperty("outboundListen").GetString());
        Assert.Equal("off", root.GetProperty("inboundListen").GetString());
        Assert.Equal("127.0.0.1:40022", root.GetProperty("adminListen").GetString());
        Assert.Equal("/c/hop2/tls.crt", mesh.GetProperty("certificate").GetString());
        Assert.Equal("/c/hop2/tls.key", mesh.GetProperty("key").GetString());
        Assert.Equal("/c/ca/ca.crt", mesh.GetProperty("trustBundle").GetString());
        Assert.Equal("in", listener.GetProperty("name").GetString());
        Assert.Equal("127.0.0.1:40021", listener.GetProperty("address").GetString());
        Assert.Equal("app", listener.GetProperty("service").GetString());
        Assert.Equal("http", listener.GetProperty("protocol").GetString());
        Assert.Equal("strict", listener.GetProperty("mesh").GetString());
        Assert.Equal("app", service.GetProperty("name").GetString());
        Assert.Equal("127.0.0.1:40001", Assert.Single(service.GetProperty("endpoints").EnumerateArray()).GetString());
        Assert.False(service.TryGetProperty("mesh", out _));
    }

    [Fact]
    public void SidecarHop1_Mtls_ServiceHop2WithItsIdentityAndPlainListener()
    {
        using var json = JsonDocument.Parse(MeshSidecarConfig.BuildHop1(Hop1Ready, Hop1Listen, Hop2Listen, Hop1Tls, Hop2Identity));
        var root = json.RootElement;
        var listener = Assert.Single(root.GetProperty("listeners").EnumerateArray());
        var service = Assert.Single(root.GetProperty("services").EnumerateArray());

        Assert.Equal("127.0.0.1:40012", root.GetProperty("adminListen").GetString());
        Assert.Equal("/c/hop1/tls.crt", root.GetProperty("mesh").GetProperty("certificate").GetString());
        Assert.Equal("out", listener.GetProperty("name").GetString());
        Assert.Equal("127.0.0.1:40011", listener.GetProperty("address").GetString());
        Assert.Equal("hop2", listener.GetProperty("service").GetString());
        Assert.Equal("http", listener.GetProperty("protocol").GetString());
        Assert.False(listener.TryGetProperty("mesh", out _));
        Assert.Equal("hop2", service.GetProperty("name").GetString());
        Assert.Equal("127.0.0.1:40021", Assert.Single(service.GetProperty("endpoints").EnumerateArray()).GetString());
        Assert.Equal(Hop2Identity, service.GetProperty("mesh").GetProperty("identity").GetString());
    }

    [Fact]
    public void SidecarHops_Plain_HaveNoMeshKeyAnywhere()
    {
        foreach (var text in new[]
        {
            MeshSidecarConfig.BuildHop2(Hop2Ready, Hop2Listen, Backend, tls: null),
            MeshSidecarConfig.BuildHop1(Hop1Ready, Hop1Listen, Hop2Listen, tls: null, Hop2Identity),
        })
        {
            Assert.DoesNotContain("mesh", text, StringComparison.Ordinal);
            using var json = JsonDocument.Parse(text);
            Assert.Single(json.RootElement.GetProperty("listeners").EnumerateArray());
            Assert.Single(json.RootElement.GetProperty("services").EnumerateArray());
        }
    }

    [Fact]
    public void HaproxyHop2_Tls_BindRequiresAndVerifiesClientCertificatesOffersH2AndHttp11()
    {
        var text = MeshHaproxyConfig.BuildHop2(Hop2Listen, Hop2Ready, Backend, new HaproxyTlsFiles("/c/hop2/haproxy.pem", "/c/ca/ca.crt"));

        Assert.Contains("    bind 127.0.0.1:40021 ssl crt /c/hop2/haproxy.pem ca-file /c/ca/ca.crt verify required alpn h2,http/1.1\n", text, StringComparison.Ordinal);
        Assert.Contains("    server app 127.0.0.1:40001\n", text, StringComparison.Ordinal);
        Assert.Contains("    bind 127.0.0.1:40022\n    monitor-uri /ready\n", text, StringComparison.Ordinal);
        Assert.Contains("nbthread 1", text, StringComparison.Ordinal);
        Assert.Contains("http-reuse always", text, StringComparison.Ordinal);
        Assert.Contains("mode http", text, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("h2")]
    [InlineData("http/1.1")]
    public void HaproxyHop1_Tls_ServerPresentsItsCertificateVerifiesHop2AndOffersTheAlpn(string alpn)
    {
        var text = MeshHaproxyConfig.BuildHop1(Hop1Listen, Hop1Ready, Hop2Listen, new HaproxyTlsFiles("/c/hop1/haproxy.pem", "/c/ca/ca.crt"), alpn);

        Assert.Contains("    bind 127.0.0.1:40011\n", text, StringComparison.Ordinal);
        Assert.Contains($"    server s1 127.0.0.1:40021 ssl crt /c/hop1/haproxy.pem ca-file /c/ca/ca.crt verify required alpn {alpn}\n", text, StringComparison.Ordinal);
        Assert.Contains("http-reuse always", text, StringComparison.Ordinal);
        Assert.Contains("nbthread 1", text, StringComparison.Ordinal);
    }

    [Fact]
    public void HaproxyHops_Plain_HaveNoSsl()
    {
        var hop2 = MeshHaproxyConfig.BuildHop2(Hop2Listen, Hop2Ready, Backend, tls: null);
        var hop1 = MeshHaproxyConfig.BuildHop1(Hop1Listen, Hop1Ready, Hop2Listen, tls: null);

        Assert.Contains("    bind 127.0.0.1:40021\n", hop2, StringComparison.Ordinal);
        Assert.Contains("    server s1 127.0.0.1:40021\n", hop1, StringComparison.Ordinal);
        Assert.DoesNotContain("ssl", hop1 + hop2, StringComparison.Ordinal);
    }

    [Fact]
    public void CombinePem_CertificateWithoutFinalNewline_KeyStartsOnItsOwnLine()
    {
        Assert.Equal("CERT\nKEY\n", MeshCertificates.CombinePem("CERT", "KEY\n"));
        Assert.Equal("CERT\nKEY\n", MeshCertificates.CombinePem("CERT\n", "KEY"));
    }

    [Fact]
    public void CaArguments_InitAndIssueForHop_NameTheTrustDomainAndSpiffeId()
    {
        Assert.Equal(["ca", "init", "--out", "/c/ca", "--trust-domain", "cluster.local"], MeshCertificates.InitArguments("/c/ca"));
        Assert.Equal(
            ["ca", "issue", "--ca-dir", "/c/ca", "--identity", Hop2Identity, "--out", "/c/hop2"],
            MeshCertificates.IssueArguments("/c/ca", "hop2", "/c/hop2"));
    }

    /// <summary>Both hops' haproxy.cfg with real mesh certificates pass <c>haproxy -c</c> (HAProxy reads the PEM files).</summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task HaproxyConfigs_WithMeshCertificates_PassHaproxyCheckWhenInstalled(bool tls)
    {
        await ToolInstaller.EnsureAsync([new ToolRequirement("haproxy", "haproxy")], allowInstall: true, CancellationToken.None).WaitAsync(TimeSpan.FromMinutes(10));
        var haproxy = ToolInstaller.Require("haproxy");
        var work = Directory.CreateTempSubdirectory("bench-test-mesh-").FullName;
        try
        {
            HaproxyTlsFiles? hop1Files = null, hop2Files = null;
            if (tls)
            {
                using var ca = MeshCertificateAuthority.CreateRoot("cluster.local", TimeSpan.FromDays(1));
                var caFile = Path.Combine(work, "ca.crt");
                await File.WriteAllTextAsync(caFile, ca.CertificateChainPem());
                (hop1Files, hop2Files) = (await WriteHopAsync(ca, "hop1", caFile), await WriteHopAsync(ca, "hop2", caFile));
            }

            var configs = new[]
            {
                MeshHaproxyConfig.BuildHop1(Hop1Listen, Hop1Ready, Hop2Listen, hop1Files),
                MeshHaproxyConfig.BuildHop2(Hop2Listen, Hop2Ready, Backend, hop2Files),
            };
            for (var i = 0; i < configs.Length; i++)
            {
                var path = Path.Combine(work, $"hop{i + 1}.cfg");
                await File.WriteAllTextAsync(path, configs[i]);
                var result = await ProcessRunner.RunAsync(haproxy, ["-c", "-f", path], TimeSpan.FromSeconds(10), CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(15));
                Assert.True(result.ExitCode == 0, result.RecentOutput);
            }
        }
        finally
        {
            Directory.Delete(work, recursive: true);
        }

        async Task<HaproxyTlsFiles> WriteHopAsync(MeshCertificateAuthority ca, string hop, string caFile)
        {
            using var leaf = ca.Issue(SpiffeId.Parse(MeshCertificates.IdentityOf(hop)), [], TimeSpan.FromHours(1));
            var pem = Path.Combine(work, $"{hop}.pem");
            await File.WriteAllTextAsync(pem, MeshCertificates.CombinePem(ca.WorkloadChainPem(leaf), MeshCertificateAuthority.PrivateKeyPem(leaf)));
            return new HaproxyTlsFiles(pem, caFile);
        }
    }
}
