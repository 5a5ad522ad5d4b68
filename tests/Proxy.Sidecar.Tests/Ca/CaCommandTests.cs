using System.Diagnostics;
using System.Security.Cryptography.X509Certificates;
using Proxy.Sidecar.Cli;
using Proxy.Tls.Identity;

namespace Proxy.Sidecar.Tests.Ca;

public sealed class CaCommandTests : IDisposable
{
    private const string Web = "spiffe://cluster.local/ns/default/sa/web";
    private readonly string _dir = Directory.CreateTempSubdirectory("proxy-ca-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static async Task<(int Code, string Out, string Err)> RunAsync(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        var code = await SidecarCommandLine.InvokeAsync(args, stdout, stderr).WaitAsync(TimeSpan.FromSeconds(30));
        return (code, stdout.ToString(), stderr.ToString());
    }

    private static async Task<(int Code, string Out)> OpensslAsync(params string[] args)
    {
        var start = new ProcessStartInfo("openssl") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));
        return (process.ExitCode, await output + await error);
    }

    private async Task<string> InitAsync(string trustDomain = "cluster.local")
    {
        var ca = Path.Combine(_dir, "ca");
        var (code, output, err) = await RunAsync("ca", "init", "--out", ca, "--trust-domain", trustDomain);
        Assert.True(code == ExitCodes.Ok, err);
        Assert.Contains($"mesh root for trust domain {trustDomain}", output, StringComparison.Ordinal);
        return ca;
    }

    [Fact]
    public async Task InitThenIssue_VerifiedByOpensslAndMeshTrust()
    {
        var ca = await InitAsync();
        var workload = Path.Combine(_dir, "web");
        var (code, output, err) = await RunAsync("ca", "issue", "--ca-dir", ca, "--identity", Web, "--dns", "web.default.svc", "--dns", "web", "--ttl", "2h", "--out", workload);
        Assert.True(code == ExitCodes.Ok, err);
        Assert.Contains($"{Web}, valid until", output, StringComparison.Ordinal);

        var caCrt = Path.Combine(ca, "ca.crt");
        var tlsCrt = Path.Combine(workload, "tls.crt");
        var (verifyCode, verifyOutput) = await OpensslAsync("verify", "-CAfile", caCrt, tlsCrt);
        Assert.True(verifyCode == 0, verifyOutput);
        Assert.Contains(": OK", verifyOutput, StringComparison.Ordinal);

        var (textCode, text) = await OpensslAsync("x509", "-in", tlsCrt, "-noout", "-text");
        Assert.Equal(0, textCode);
        Assert.Contains($"URI:{Web}", text, StringComparison.Ordinal);
        Assert.Contains("DNS:web.default.svc", text, StringComparison.Ordinal);
        Assert.Contains("TLS Web Server Authentication, TLS Web Client Authentication", text, StringComparison.Ordinal);
        Assert.Contains("CA:FALSE", text, StringComparison.Ordinal);
        Assert.Contains("Issuer: CN = cluster.local mesh root", text, StringComparison.Ordinal);

        var (caTextCode, caText) = await OpensslAsync("x509", "-in", caCrt, "-noout", "-text");
        Assert.Equal(0, caTextCode);
        Assert.Contains("CA:TRUE", caText, StringComparison.Ordinal);
        Assert.Contains("Certificate Sign, CRL Sign", caText, StringComparison.Ordinal);
        Assert.Contains("ASN1 OID: prime256v1", caText, StringComparison.Ordinal);
        Assert.Contains("URI:spiffe://cluster.local\n", caText, StringComparison.Ordinal); // the trust domain's ID: no trailing '/'

        using var trust = MeshTrust.FromPemFile(caCrt);
        X509Certificate2Collection chain = [];
        chain.ImportFromPemFile(tlsCrt);
        Assert.Equal(2, chain.Count); // leaf + CA
        using var leaf = X509Certificate2.CreateFromPemFile(tlsCrt, Path.Combine(workload, "tls.key"));
        Assert.True(leaf.HasPrivateKey);
        Assert.InRange(leaf.NotAfter.ToUniversalTime() - DateTime.UtcNow, TimeSpan.FromMinutes(110), TimeSpan.FromMinutes(121));
        foreach (var role in new[] { PeerRole.Client, PeerRole.Server })
        {
            var result = trust.Verify(leaf, chain, role, IdentityPattern.Exact(SpiffeId.Parse(Web)));
            Assert.True(result.IsValid, result.ToString());
        }
    }

    [Fact]
    public async Task Init_KeyFileMode0600_RefusesOverwriteWithoutForce()
    {
        var ca = await InitAsync();
        var key = Path.Combine(ca, "ca.key");
        if (!OperatingSystem.IsWindows())
        {
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(key));
        }

        var before = await File.ReadAllTextAsync(key);
        var (code, _, err) = await RunAsync("ca", "init", "--out", ca);
        Assert.Equal(ExitCodes.Failure, code);
        Assert.Contains("exists; use --force", err, StringComparison.Ordinal);
        Assert.Equal(before, await File.ReadAllTextAsync(key));

        var (forced, _, forcedErr) = await RunAsync("ca", "init", "--out", ca, "--force");
        Assert.True(forced == ExitCodes.Ok, forcedErr);
        Assert.NotEqual(before, await File.ReadAllTextAsync(key));
        Assert.Empty(Directory.GetFiles(ca, "*.tmp"));
    }

    [Fact]
    public async Task Issue_IdentityInAnotherTrustDomain_Exit64()
    {
        var ca = await InitAsync();
        var (code, _, err) = await RunAsync("ca", "issue", "--ca-dir", ca, "--identity", "spiffe://other.org/ns/a/sa/b", "--out", Path.Combine(_dir, "w"));
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Contains("is in trust domain other.org, but the CA", err, StringComparison.Ordinal);
        Assert.False(Directory.Exists(Path.Combine(_dir, "w")));
    }

    [Fact]
    public async Task Issue_ExplicitFiles_AndCaFiles()
    {
        var ca = await InitAsync("prod.example");
        var cert = Path.Combine(_dir, "out", "svc.pem");
        var key = Path.Combine(_dir, "out", "svc.key");
        var (code, _, err) = await RunAsync("ca", "issue", "--ca-cert", Path.Combine(ca, "ca.crt"), "--ca-key", Path.Combine(ca, "ca.key"),
            "--identity", "spiffe://prod.example/billing", "--cert", cert, "--key", key);
        Assert.True(code == ExitCodes.Ok, err);
        using var leaf = X509Certificate2.CreateFromPemFile(cert, key);
        Assert.Equal("spiffe://prod.example/billing", CertificateIdentity.GetSpiffeIdOrNull(leaf)?.Uri);

        var (again, _, againErr) = await RunAsync("ca", "issue", "--ca-dir", ca, "--ca-cert", cert, "--identity", "spiffe://prod.example/billing", "--cert", cert, "--key", key);
        Assert.Equal(ExitCodes.Usage, again);
        Assert.Contains("give either --ca-dir or", againErr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Issue_BadFlags_AllReportedAtOnce_Exit64()
    {
        var (code, _, err) = await RunAsync("ca", "issue", "--identity", "spiffe://Cluster/x", "--dns", "not a name", "--ttl", "soon", "--cert", "x.pem");
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Contains("--ca-dir: required (or --ca-cert and --ca-key)", err, StringComparison.Ordinal);
        Assert.Contains("--key: required with --cert", err, StringComparison.Ordinal);
        Assert.Contains("--identity: \"spiffe://Cluster/x\": the trust domain must be lower case", err, StringComparison.Ordinal);
        Assert.Contains("--dns: \"not a name\" is not a DNS name", err, StringComparison.Ordinal);
        Assert.Contains("--ttl: \"soon\" is not a duration", err, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Issue_TrustDomainIdAsIdentity_Exit64()
    {
        var (code, _, err) = await RunAsync("ca", "issue", "--ca-dir", _dir, "--identity", "spiffe://cluster.local", "--out", _dir);
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Contains("names a trust domain, not a workload", err, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Issue_MissingCaFiles_Exit1()
    {
        var (code, _, err) = await RunAsync("ca", "issue", "--ca-dir", Path.Combine(_dir, "nope"), "--identity", Web, "--out", _dir);
        Assert.Equal(ExitCodes.Failure, code);
        Assert.Contains("cannot read the CA certificate", err, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Issue_RefusesOverwriteWithoutForce_RotatesWithForce()
    {
        var ca = await InitAsync();
        var workload = Path.Combine(_dir, "w");
        Assert.Equal(ExitCodes.Ok, (await RunAsync("ca", "issue", "--ca-dir", ca, "--identity", Web, "--out", workload)).Code);
        var first = await File.ReadAllTextAsync(Path.Combine(workload, "tls.crt"));
        var (code, _, err) = await RunAsync("ca", "issue", "--ca-dir", ca, "--identity", Web, "--out", workload);
        Assert.Equal(ExitCodes.Failure, code);
        Assert.Contains("exists; use --force", err, StringComparison.Ordinal);
        Assert.Equal(ExitCodes.Ok, (await RunAsync("ca", "issue", "--ca-dir", ca, "--identity", Web, "--out", workload, "--force")).Code);
        Assert.NotEqual(first, await File.ReadAllTextAsync(Path.Combine(workload, "tls.crt")));
    }

    [Fact]
    public async Task IssueForce_WhileASourceWatchesTheFiles_SourceReloads()
    {
        var ca = await InitAsync();
        var workload = Path.Combine(_dir, "w");
        Assert.Equal(ExitCodes.Ok, (await RunAsync("ca", "issue", "--ca-dir", ca, "--identity", Web, "--out", workload)).Code);
        using var source = new Proxy.Tls.Certificates.FileCertificateSource(
            Path.Combine(workload, "tls.crt"),
            Path.Combine(workload, "tls.key"),
            new Proxy.Tls.Certificates.FileCertificateSourceOptions { DebounceDelay = TimeSpan.FromMilliseconds(20), PollInterval = Timeout.InfiniteTimeSpan });
        var first = source.Certificate.Thumbprint;
        var reloaded = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        source.Reloaded += (_, e) =>
        {
            if (e.Outcome == Proxy.Tls.Certificates.CertificateReloadOutcome.Reloaded)
            {
                reloaded.TrySetResult(e.Current.Thumbprint);
            }
        };

        const string Rotated = "spiffe://cluster.local/ns/default/sa/web-v2";
        Assert.Equal(ExitCodes.Ok, (await RunAsync("ca", "issue", "--ca-dir", ca, "--identity", Rotated, "--out", workload, "--force")).Code);
        var now = await reloaded.Task.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.NotEqual(first, now);
        Assert.Equal(Rotated, source.Identity?.Uri);
    }

    [Fact]
    public async Task Init_BadTrustDomainAndTtl_Exit64()
    {
        var (code, _, err) = await RunAsync("ca", "init", "--trust-domain", "Bad_Domain", "--ttl", "10y");
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Contains("--out: required", err, StringComparison.Ordinal);
        Assert.Contains("--trust-domain: the trust domain \"Bad_Domain\" has the character 'B'", err, StringComparison.Ordinal);
        Assert.Contains("--ttl: \"10y\" is not a duration", err, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Help_DescribesBothCommands()
    {
        var (code, output, _) = await RunAsync("ca", "--help");
        Assert.Equal(0, code);
        Assert.Contains("init", output, StringComparison.Ordinal);
        Assert.Contains("issue", output, StringComparison.Ordinal);
        var (issueCode, issueHelp, _) = await RunAsync("ca", "issue", "--help");
        Assert.Equal(0, issueCode);
        Assert.Contains("--identity <spiffe-id>", issueHelp, StringComparison.Ordinal);
        Assert.Contains("[default: 24h]", issueHelp, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("30s", 30)]
    [InlineData("90m", 5400)]
    [InlineData("24h", 86400)]
    [InlineData("1.5h", 5400)]
    [InlineData("3650d", 315_360_000)]
    public void ParseTtl_Units(string text, double seconds)
    {
        Assert.Null(Proxy.Sidecar.Ca.CaCommand.ParseTtl(text, out var value));
        Assert.Equal(seconds, value.TotalSeconds);
    }

    [Theory]
    [InlineData("")]
    [InlineData("10")]
    [InlineData("0d")]
    [InlineData("-1h")]
    [InlineData("0.5s")]
    [InlineData("40000d")]
    public void ParseTtl_Invalid(string text) => Assert.NotNull(Proxy.Sidecar.Ca.CaCommand.ParseTtl(text, out _));
}
