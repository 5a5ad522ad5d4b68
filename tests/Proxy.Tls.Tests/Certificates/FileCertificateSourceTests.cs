using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Logging;
using Proxy.Core.Metrics;
using Proxy.Tls.Ca;
using Proxy.Tls.Certificates;
using Proxy.Tls.Tests.TestSupport;

namespace Proxy.Tls.Tests.Certificates;

public sealed class FileCertificateSourceTests : IDisposable
{
    private const string Web = "spiffe://cluster.local/ns/default/sa/web";
    private const string Api = "spiffe://cluster.local/ns/default/sa/api";
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);
    private readonly string _dir = Directory.CreateTempSubdirectory("proxy-certs-").FullName;
    private readonly MeshCertificateAuthority _ca = TestCertificates.NewCa();
    private readonly ListLogger _log = new();

    private string CertPath => Path.Combine(_dir, "tls.crt");

    private string KeyPath => Path.Combine(_dir, "tls.key");

    public void Dispose()
    {
        _ca.Dispose();
        Directory.Delete(_dir, recursive: true);
    }

    private X509Certificate2 WriteNew(string identity, TimeSpan? lifetime = null)
    {
        var leaf = TestCertificates.Issue(_ca, identity, lifetime);
        CertificateFiles.Write(_ca, leaf, CertPath, KeyPath);
        return leaf;
    }

    /// <summary>Polling and watching off: only CheckNow reads the files.</summary>
    private static FileCertificateSourceOptions Manual => new() { Name = "web", PollInterval = System.Threading.Timeout.InfiniteTimeSpan, WatchFileSystem = false };

    [Fact]
    public void Constructor_LoadsFiles()
    {
        using var leaf = WriteNew(Web);
        using var source = new FileCertificateSource(CertPath, KeyPath, Manual, _log);
        Assert.Equal(leaf.Thumbprint, source.Certificate.Thumbprint);
        Assert.Equal(leaf.Thumbprint, source.Current.TargetCertificate.Thumbprint);
        Assert.Equal(Web, source.Identity?.Uri);
        Assert.Equal(new DateTimeOffset(leaf.NotAfter.ToUniversalTime()), source.NotAfter);
        Assert.Equal(1, source.Generation);
        Assert.Equal("web", source.Name);
        Assert.Equal(1, _log.Count(4301));
        Assert.Equal(CertificateReloadOutcome.Unchanged, source.CheckNow());
    }

    [Fact]
    public void Constructor_MissingOrMismatchedFiles_Throws()
    {
        var missing = Assert.Throws<CertificateLoadException>(() => new FileCertificateSource(CertPath, KeyPath, Manual));
        Assert.Contains("cannot read the certificate file", missing.Message, StringComparison.Ordinal);

        using var a = WriteNew(Web);
        var keyOfA = File.ReadAllText(KeyPath);
        using var b = WriteNew(Api);
        File.WriteAllText(KeyPath, keyOfA);
        var mismatch = Assert.Throws<CertificateLoadException>(() => new FileCertificateSource(CertPath, KeyPath, Manual));
        Assert.Contains("cannot pair the certificate", mismatch.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void CheckNow_NewFiles_SwapsAndRaisesEvent()
    {
        using var first = WriteNew(Web);
        using var source = new FileCertificateSource(CertPath, KeyPath, Manual, _log);
        var contextBefore = source.Current;
        CertificateReloadEventArgs? seen = null;
        source.Reloaded += (_, e) => seen = e;

        using var second = WriteNew(Api);
        Assert.Equal(CertificateReloadOutcome.Reloaded, source.CheckNow());
        Assert.Equal(second.Thumbprint, source.Certificate.Thumbprint);
        Assert.Equal(second.Thumbprint, source.Current.TargetCertificate.Thumbprint);
        Assert.Equal(Api, source.Identity?.Uri);
        Assert.Equal(2, source.Generation);
        Assert.Equal(CertificateReloadOutcome.Reloaded, seen?.Outcome);
        Assert.Equal(second.Thumbprint, seen?.Current.Thumbprint);
        Assert.Equal(first.Thumbprint, contextBefore.TargetCertificate.Thumbprint); // what a handshake already holds stays as it was
        Assert.Equal(1, _log.Count(4302));
        Assert.Equal(CertificateReloadOutcome.Unchanged, source.CheckNow());
    }

    [Fact]
    public void CheckNow_BadFiles_KeepOld_ReportOnce_ThenRecover()
    {
        using var first = WriteNew(Web);
        using var source = new FileCertificateSource(CertPath, KeyPath, Manual, _log);
        var events = new List<CertificateReloadEventArgs>();
        source.Reloaded += (_, e) => events.Add(e);

        File.WriteAllText(CertPath, "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n");
        Assert.Equal(CertificateReloadOutcome.Failed, source.CheckNow());
        Assert.Equal(first.Thumbprint, source.Certificate.Thumbprint);
        Assert.Equal(1, source.Generation);
        Assert.Equal(CertificateReloadOutcome.Unchanged, source.CheckNow()); // the same bad content: not reported again
        Assert.Single(events);
        Assert.Equal(CertificateReloadOutcome.Failed, events[0].Outcome);
        Assert.Equal(first.Thumbprint, events[0].Current.Thumbprint);
        Assert.Equal(1, _log.Count(4303));
        Assert.Equal(LogLevel.Warning, _log.Entries.Single(e => e.EventId == 4303).Level);

        File.Delete(KeyPath);
        Assert.Equal(CertificateReloadOutcome.Failed, source.CheckNow());
        Assert.Contains("cannot read the key file", events[^1].Error, StringComparison.Ordinal);
        Assert.Equal(first.Thumbprint, source.Certificate.Thumbprint);

        using var fixedLeaf = WriteNew(Web);
        Assert.Equal(CertificateReloadOutcome.Reloaded, source.CheckNow());
        Assert.Equal(fixedLeaf.Thumbprint, source.Certificate.Thumbprint);
    }

    [Fact]
    public void CheckNow_CertificateWrittenBeforeItsKey_KeepsOldUntilTheKeyArrives()
    {
        using var first = WriteNew(Web);
        using var source = new FileCertificateSource(CertPath, KeyPath, Manual, _log);
        using var second = TestCertificates.Issue(_ca, Api);
        File.WriteAllText(CertPath, _ca.WorkloadChainPem(second));
        Assert.Equal(CertificateReloadOutcome.Failed, source.CheckNow());
        Assert.Equal(first.Thumbprint, source.Current.TargetCertificate.Thumbprint);

        File.WriteAllText(KeyPath, MeshCertificateAuthority.PrivateKeyPem(second));
        Assert.Equal(CertificateReloadOutcome.Reloaded, source.CheckNow());
        Assert.Equal(second.Thumbprint, source.Current.TargetCertificate.Thumbprint);
    }

    [Fact]
    public void CheckNow_ExpiredNewCertificate_KeepsOld()
    {
        using var first = WriteNew(Web);
        var clock = new TestClock(DateTimeOffset.UtcNow);
        using var source = new FileCertificateSource(CertPath, KeyPath, Manual, _log, time: clock);
        using var expired = TestCertificates.Custom(_ca, [Api], notBefore: DateTimeOffset.UtcNow.AddMinutes(-5), notAfter: DateTimeOffset.UtcNow.AddMinutes(1));
        CertificateFiles.Write(_ca, expired, CertPath, KeyPath);
        clock.Now = DateTimeOffset.UtcNow.AddMinutes(2);
        Assert.Equal(CertificateReloadOutcome.Failed, source.CheckNow());
        Assert.Equal(first.Thumbprint, source.Certificate.Thumbprint);
        Assert.Contains("expired at", _log.Entries.Single(e => e.EventId == 4303).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void PollTimer_InjectedClock_ReloadsOnTick()
    {
        using var first = WriteNew(Web);
        var clock = new TestClock(DateTimeOffset.UtcNow);
        using var source = new FileCertificateSource(CertPath, KeyPath, Manual with { PollInterval = TimeSpan.FromSeconds(10) }, _log, time: clock);
        using var second = WriteNew(Api);
        clock.Advance(TimeSpan.FromSeconds(9));
        Assert.Equal(first.Thumbprint, source.Certificate.Thumbprint);
        clock.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal(second.Thumbprint, source.Certificate.Thumbprint);

        source.Dispose();
        Assert.Equal(0, clock.ArmedTimers);
        using var third = WriteNew(Web);
        clock.Advance(TimeSpan.FromSeconds(10));
        Assert.Equal(second.Thumbprint, source.Certificate.Thumbprint); // disposed: no longer polling
    }

    [Fact]
    public async Task Watcher_FileRewritten_ReloadsWithoutPolling()
    {
        using var first = WriteNew(Web);
        using var source = new FileCertificateSource(CertPath, KeyPath, Manual with { WatchFileSystem = true, DebounceDelay = TimeSpan.FromMilliseconds(20) }, _log);
        var reloaded = WaitForReload(source);

        using var second = WriteNew(Api);
        var e = await reloaded.WaitAsync(Timeout);
        Assert.Equal(second.Thumbprint, e.Current.Thumbprint);
        Assert.Equal(second.Thumbprint, source.Current.TargetCertificate.Thumbprint);
    }

    [Fact]
    public async Task Watcher_KubernetesSymlinkSwap_Reloads()
    {
        using var first = TestCertificates.Issue(_ca, Web);
        CertificateFiles.WriteKubernetesVolume(_dir, _ca, first, 1);
        using var source = new FileCertificateSource(CertPath, KeyPath, Manual with { WatchFileSystem = true, DebounceDelay = TimeSpan.FromMilliseconds(20) }, _log);
        Assert.Equal(first.Thumbprint, source.Certificate.Thumbprint);
        var reloaded = WaitForReload(source);

        using var second = TestCertificates.Issue(_ca, Api);
        CertificateFiles.WriteKubernetesVolume(_dir, _ca, second, 2);
        var e = await reloaded.WaitAsync(Timeout);
        Assert.Equal(second.Thumbprint, e.Current.Thumbprint);
        Assert.Equal(Api, source.Identity?.Uri);
    }

    [Fact]
    public void KubernetesSymlinkSwap_PickedUpByCheck()
    {
        using var first = TestCertificates.Issue(_ca, Web);
        CertificateFiles.WriteKubernetesVolume(_dir, _ca, first, 1);
        using var source = new FileCertificateSource(CertPath, KeyPath, Manual, _log);
        using var second = TestCertificates.Issue(_ca, Api);
        CertificateFiles.WriteKubernetesVolume(_dir, _ca, second, 2);
        Assert.Equal(CertificateReloadOutcome.Reloaded, source.CheckNow());
        Assert.Equal(second.Thumbprint, source.Certificate.Thumbprint);
    }

    [Fact]
    public void Expiry_WarnsOnceThenErrorsOnce()
    {
        using var leaf = WriteNew(Web, TimeSpan.FromHours(10));
        var clock = new TestClock(DateTimeOffset.UtcNow);
        using var source = new FileCertificateSource(CertPath, KeyPath, Manual with { PollInterval = TimeSpan.FromMinutes(1) }, _log, time: clock);
        clock.Advance(TimeSpan.FromHours(7)); // 3 h of ~10 h left: above 20%
        Assert.Equal(0, _log.Count(4304));
        clock.Advance(TimeSpan.FromHours(1.5)); // ~1.5 h left: below 20%
        clock.Advance(TimeSpan.FromMinutes(1));
        Assert.Equal(1, _log.Count(4304));
        Assert.Equal(LogLevel.Warning, _log.Entries.Single(e => e.EventId == 4304).Level);
        clock.Advance(TimeSpan.FromHours(2));
        clock.Advance(TimeSpan.FromMinutes(1));
        Assert.Equal(1, _log.Count(4304));
        Assert.Equal(1, _log.Count(4305));
    }

    [Fact]
    public void Expiry_LongLivedCertificate_WarnsOnlyInTheLastDay()
    {
        using var leaf = WriteNew(Web, TimeSpan.FromDays(30));
        var clock = new TestClock(DateTimeOffset.UtcNow);
        using var source = new FileCertificateSource(CertPath, KeyPath, Manual with { PollInterval = TimeSpan.FromHours(1) }, _log, time: clock);
        clock.Advance(TimeSpan.FromDays(28)); // 20% of 30 days passed long ago, but 2 days remain
        Assert.Equal(0, _log.Count(4304));
        clock.Advance(TimeSpan.FromDays(1.5));
        Assert.Equal(1, _log.Count(4304));
    }

    [Fact]
    public void Metrics_ExpiryGaugeAndReloadCounter()
    {
        using var metrics = new ProxyMetrics();
        using var exporter = new PrometheusExporter(metrics.Meter);
        using var first = WriteNew(Web, TimeSpan.FromHours(1));
        var clock = new TestClock(DateTimeOffset.UtcNow);
        using var source = new FileCertificateSource(CertPath, KeyPath, Manual, _log, metrics, clock);
        File.WriteAllText(KeyPath, "garbage");
        source.CheckNow();
        using var second = WriteNew(Api, TimeSpan.FromHours(2));
        source.CheckNow();

        var text = exporter.Render();
        Assert.Contains("# TYPE proxy_tls_certificate_expiry_seconds gauge", text, StringComparison.Ordinal);
        var line = text.Split('\n').Single(l => l.StartsWith("proxy_tls_certificate_expiry_seconds{name=\"web\"}", StringComparison.Ordinal));
        var seconds = double.Parse(line.Split(' ')[^1], System.Globalization.CultureInfo.InvariantCulture);
        Assert.InRange(seconds, 7000, 7300); // the clock was read before the certificate was issued
        Assert.Contains("proxy_tls_certificate_reloads_total{name=\"web\",result=\"success\"} 1", text, StringComparison.Ordinal);
        Assert.Contains("proxy_tls_certificate_reloads_total{name=\"web\",result=\"failure\"} 1", text, StringComparison.Ordinal);

        clock.Now += TimeSpan.FromHours(1);
        Assert.Contains("proxy_tls_certificate_expiry_seconds{name=\"web\"} 3", exporter.Render(), StringComparison.Ordinal); // observed at export time
    }

    [Fact]
    public void CertificateSourcesWatch_ReturnsReloadingSource()
    {
        using var first = WriteNew(Web);
        using var source = CertificateSources.Watch(CertPath, KeyPath, Manual);
        using var second = WriteNew(Api);
        source.CheckNow();
        Assert.Equal(second.Thumbprint, source.Current.TargetCertificate.Thumbprint);
    }

    private static Task<CertificateReloadEventArgs> WaitForReload(FileCertificateSource source)
    {
        var done = new TaskCompletionSource<CertificateReloadEventArgs>(TaskCreationOptions.RunContinuationsAsynchronously);
        source.Reloaded += (_, e) =>
        {
            if (e.Outcome == CertificateReloadOutcome.Reloaded)
            {
                done.TrySetResult(e);
            }
        };
        return done.Task;
    }
}
