using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Proxy.Core.Metrics;
using Proxy.Tls.Identity;

namespace Proxy.Tls.Certificates;

/// <summary>How a <see cref="FileCertificateSource"/> notices changes and when it warns about expiry.</summary>
public sealed record FileCertificateSourceOptions
{
    /// <summary>Name in logs and in the metrics' "name" tag (keep it bounded: one per configured certificate). Default: the certificate file's name.</summary>
    public string? Name { get; init; }

    /// <summary>How often the files are re-read as a fallback to file-system events (and expiry re-checked). <see cref="Timeout.InfiniteTimeSpan"/> disables the timer.</summary>
    public TimeSpan PollInterval { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Watch the files' directories (FileSystemWatcher) for changes; polling still runs.</summary>
    public bool WatchFileSystem { get; init; } = true;

    /// <summary>How long after a file-system event the files are read, so a burst of events (cert, then key, then a symlink swap) becomes one reload.</summary>
    public TimeSpan DebounceDelay { get; init; } = TimeSpan.FromMilliseconds(100);

    /// <summary>
    /// The expiry warning is logged when the time left drops below min(<see cref="ExpiryWarningFraction"/> x lifetime,
    /// <see cref="ExpiryWarningCap"/>): a 24 h workload certificate warns with 4.8 h left, a one-year one with 24 h left.
    /// </summary>
    public double ExpiryWarningFraction { get; init; } = 0.2;

    /// <summary>See <see cref="ExpiryWarningFraction"/>.</summary>
    public TimeSpan ExpiryWarningCap { get; init; } = TimeSpan.FromHours(24);
}

/// <summary>What a reload check did.</summary>
public enum CertificateReloadOutcome
{
    /// <summary>The files hold what is loaded already (or the same bad content that failed before).</summary>
    Unchanged,

    /// <summary>New files loaded; new handshakes present them.</summary>
    Reloaded,

    /// <summary>The files changed but cannot be used; the previous certificate stays.</summary>
    Failed,
}

/// <summary>A reload that changed something (<see cref="CertificateReloadOutcome.Reloaded"/> or a new <see cref="CertificateReloadOutcome.Failed"/>).</summary>
public sealed class CertificateReloadEventArgs(CertificateReloadOutcome outcome, X509Certificate2 current, string? error) : EventArgs
{
    public CertificateReloadOutcome Outcome { get; } = outcome;

    /// <summary>The leaf presented from now on (the new one, or the kept one after a failure).</summary>
    public X509Certificate2 Current { get; } = current;

    /// <summary>Why the new files were not used (for <see cref="CertificateReloadOutcome.Failed"/>).</summary>
    public string? Error { get; } = error;
}

/// <summary>
/// A certificate and key read from PEM files and reloaded when they change, for a listener or client that reads
/// <see cref="Current"/> once per handshake: new handshakes get the new certificate, established connections keep
/// the one they negotiated (old certificates are never disposed while in use; the GC collects them).
/// <list type="number">
/// <item>Change detection: a FileSystemWatcher on each file's directory (any event there, including the atomic
/// <c>..data</c> symlink swap of Kubernetes secret and configmap volumes, schedules a check after
/// <see cref="FileCertificateSourceOptions.DebounceDelay"/>), plus a poll every <see cref="FileCertificateSourceOptions.PollInterval"/>
/// in case events are lost or unavailable (some network and overlay file systems).</item>
/// <item>A check reads both files (following symlinks) and compares their SHA-256 with what is loaded: unchanged
/// content costs two small reads and a hash, nothing else.</item>
/// <item>Changed content is parsed; a certificate that does not pair with the key (e.g. read between the writes of
/// the two files), is malformed or has expired is refused: the old one stays, a warning is logged once per distinct
/// bad content, and the next change is tried again.</item>
/// <item>Good content replaces the snapshot with one volatile write, so a handshake reads one consistent context.</item>
/// </list>
/// Expiry: logged once as a warning when less than min(<see cref="FileCertificateSourceOptions.ExpiryWarningFraction"/> of
/// the lifetime, <see cref="FileCertificateSourceOptions.ExpiryWarningCap"/>) remains, and once as an error when expired;
/// exported as <c>proxy_tls_certificate_expiry_seconds{name}</c>, reloads as <c>proxy_tls_certificate_reloads_total{name,result}</c>.
/// </summary>
public sealed partial class FileCertificateSource : ICertificateSource, IDisposable
{
    private readonly string _certificatePath;
    private readonly string _keyPath;
    private readonly FileCertificateSourceOptions _options;
    private readonly ILogger _logger;
    private readonly ProxyMetrics? _metrics;
    private readonly TimeProvider _time;
    private readonly Lock _checkLock = new();
    private readonly List<FileSystemWatcher> _watchers = [];
    private readonly ITimer? _pollTimer;
    private readonly ITimer? _debounceTimer;
    private readonly IDisposable? _expiryRegistration;
    private Snapshot _snapshot;
    private byte[]? _lastFailedHash;
    private int _disposed;

    /// <summary>Loads the files now and starts watching them.</summary>
    /// <exception cref="CertificateLoadException">The files cannot be used now (a sidecar should not start without its certificate).</exception>
    public FileCertificateSource(
        string certificatePath,
        string keyPath,
        FileCertificateSourceOptions? options = null,
        ILogger? logger = null,
        ProxyMetrics? metrics = null,
        TimeProvider? time = null)
    {
        _certificatePath = Path.GetFullPath(certificatePath);
        _keyPath = Path.GetFullPath(keyPath);
        _options = options ?? new FileCertificateSourceOptions();
        _logger = logger ?? NullLogger.Instance;
        _metrics = metrics;
        _time = time ?? TimeProvider.System;
        Name = _options.Name ?? Path.GetFileName(certificatePath);

        var (certificatePem, keyPem, hash) = ReadFiles();
        _snapshot = Parse(certificatePem, keyPem, hash, generation: 1);
        Log.Loaded(_logger, Name, _snapshot.Description, _snapshot.NotAfter);
        CheckExpiry();

        if (_metrics is not null)
        {
            _expiryRegistration = _metrics.TrackCertificateExpiry(Name, () => (NotAfter - _time.GetUtcNow()).TotalSeconds);
        }

        if (_options.WatchFileSystem)
        {
            _debounceTimer = _time.CreateTimer(static s => ((FileCertificateSource)s!).OnTimer(), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
            foreach (var directory in new[] { Path.GetDirectoryName(_certificatePath)!, Path.GetDirectoryName(_keyPath)! }.Distinct(StringComparer.Ordinal))
            {
                StartWatcher(directory);
            }
        }

        if (_options.PollInterval != Timeout.InfiniteTimeSpan)
        {
            _pollTimer = _time.CreateTimer(static s => ((FileCertificateSource)s!).OnTimer(), this, _options.PollInterval, _options.PollInterval);
        }
    }

    /// <summary>The name in logs and metrics.</summary>
    public string Name { get; }

    /// <inheritdoc/>
    public SslStreamCertificateContext Current => Volatile.Read(ref _snapshot).Context;

    /// <inheritdoc/>
    public DateTimeOffset NotAfter => Volatile.Read(ref _snapshot).NotAfter;

    /// <summary>The leaf certificate presented now (with its private key). Do not dispose it.</summary>
    public X509Certificate2 Certificate => Volatile.Read(ref _snapshot).Leaf;

    /// <summary>The workload identity of <see cref="Certificate"/>, or null when it has none.</summary>
    public SpiffeId? Identity => Volatile.Read(ref _snapshot).Identity;

    /// <summary>1 for the certificate loaded at construction, +1 for each reload.</summary>
    public long Generation => Volatile.Read(ref _snapshot).Generation;

    /// <summary>Raised after a reload and after a failed one (once per distinct bad content), on the thread that checked.</summary>
    public event EventHandler<CertificateReloadEventArgs>? Reloaded;

    /// <summary>
    /// Reads the files now and reloads if they changed (what the watcher and the poll do; tests and a SIGHUP handler
    /// may call it). Thread-safe; checks are serialized.
    /// </summary>
    public CertificateReloadOutcome CheckNow()
    {
        CertificateReloadEventArgs? raised;
        CertificateReloadOutcome outcome;
        lock (_checkLock)
        {
            (outcome, raised) = CheckUnsynchronized();
        }

        if (raised is not null)
        {
            Reloaded?.Invoke(this, raised);
        }

        return outcome;
    }

    private (CertificateReloadOutcome, CertificateReloadEventArgs?) CheckUnsynchronized()
    {
        var current = _snapshot;
        string certificatePem;
        string keyPem;
        byte[] hash;
        try
        {
            (certificatePem, keyPem, hash) = ReadFiles();
        }
        catch (CertificateLoadException e)
        {
            // A file missing for a moment (being replaced) or unreadable: report once per distinct state.
            return Fail(current, e.Message, SHA256.HashData(Encoding.UTF8.GetBytes(e.Message)));
        }

        if (hash.AsSpan().SequenceEqual(current.Hash))
        {
            _lastFailedHash = null;
            return (CertificateReloadOutcome.Unchanged, null);
        }

        if (_lastFailedHash is not null && hash.AsSpan().SequenceEqual(_lastFailedHash))
        {
            return (CertificateReloadOutcome.Unchanged, null);
        }

        Snapshot next;
        try
        {
            next = Parse(certificatePem, keyPem, hash, current.Generation + 1);
        }
        catch (CertificateLoadException e)
        {
            return Fail(current, e.Message, hash);
        }

        var now = _time.GetUtcNow();
        if (now > next.NotAfter)
        {
            return Fail(current, $"the new certificate {next.Description} expired at {next.NotAfter:u}", hash);
        }

        _lastFailedHash = null;
        Volatile.Write(ref _snapshot, next);
        _metrics?.CertificateReloads.Add(1, new KeyValuePair<string, object?>("name", Name), new KeyValuePair<string, object?>("result", "success"));
        Log.Reloaded(_logger, Name, next.Description, next.NotAfter, next.Generation);
        CheckExpiry();
        return (CertificateReloadOutcome.Reloaded, new CertificateReloadEventArgs(CertificateReloadOutcome.Reloaded, next.Leaf, null));
    }

    private (CertificateReloadOutcome, CertificateReloadEventArgs?) Fail(Snapshot current, string error, byte[] hash)
    {
        if (_lastFailedHash is not null && hash.AsSpan().SequenceEqual(_lastFailedHash))
        {
            return (CertificateReloadOutcome.Unchanged, null);
        }

        _lastFailedHash = hash;
        _metrics?.CertificateReloads.Add(1, new KeyValuePair<string, object?>("name", Name), new KeyValuePair<string, object?>("result", "failure"));
        Log.ReloadFailed(_logger, Name, error, current.Description, current.NotAfter);
        return (CertificateReloadOutcome.Failed, new CertificateReloadEventArgs(CertificateReloadOutcome.Failed, current.Leaf, error));
    }

    /// <summary>Logs the expiry warning or error once per certificate (called on load and on each poll).</summary>
    public void CheckExpiry()
    {
        var snapshot = Volatile.Read(ref _snapshot);
        var now = _time.GetUtcNow();
        var remaining = snapshot.NotAfter - now;
        var lifetime = snapshot.NotAfter - snapshot.NotBefore;
        var warnAt = TimeSpan.FromTicks(Math.Min((long)(lifetime.Ticks * _options.ExpiryWarningFraction), _options.ExpiryWarningCap.Ticks));
        var level = remaining <= TimeSpan.Zero ? 2 : remaining < warnAt ? 1 : 0;

        // Raise the logged level at most once per step for this snapshot (a reload brings a new snapshot at 0).
        var logged = Volatile.Read(ref snapshot.ExpiryLevelLogged);
        if (level <= logged || Interlocked.CompareExchange(ref snapshot.ExpiryLevelLogged, level, logged) != logged)
        {
            return;
        }

        if (level == 2)
        {
            Log.Expired(_logger, Name, snapshot.Description, snapshot.NotAfter);
        }
        else
        {
            Log.ExpiresSoon(_logger, Name, snapshot.Description, snapshot.NotAfter, remaining);
        }
    }

    private void OnTimer()
    {
        if (Volatile.Read(ref _disposed) != 0)
        {
            return;
        }

        try
        {
            CheckNow();
            CheckExpiry();
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // Never let a timer callback crash the process; the next tick tries again.
            Log.CheckFailed(_logger, e, Name);
        }
    }

    private void StartWatcher(string directory)
    {
        FileSystemWatcher? watcher = null;
        try
        {
            watcher = new FileSystemWatcher(directory)
            {
                IncludeSubdirectories = false,
                NotifyFilter = NotifyFilters.FileName | NotifyFilters.DirectoryName | NotifyFilters.LastWrite | NotifyFilters.Size | NotifyFilters.CreationTime | NotifyFilters.Attributes,
            };
            watcher.Changed += OnFileSystemEvent;
            watcher.Created += OnFileSystemEvent;
            watcher.Deleted += OnFileSystemEvent;
            watcher.Renamed += OnFileSystemEvent;
            watcher.Error += OnWatcherError;
            watcher.EnableRaisingEvents = true;
            _watchers.Add(watcher);
        }
        catch (Exception e) when (e is IOException or ArgumentException or UnauthorizedAccessException or PlatformNotSupportedException)
        {
            // E.g. the inotify watch limit is reached: the poll still notices changes.
            watcher?.Dispose();
            Log.WatchUnavailable(_logger, Name, directory, _options.PollInterval, e.Message);
        }
    }

    private void OnFileSystemEvent(object sender, FileSystemEventArgs e) => ScheduleCheck();

    private void OnWatcherError(object sender, ErrorEventArgs e) => ScheduleCheck();

    private void ScheduleCheck()
    {
        if (Volatile.Read(ref _disposed) == 0)
        {
            _debounceTimer?.Change(_options.DebounceDelay, Timeout.InfiniteTimeSpan);
        }
    }

    private (string CertificatePem, string KeyPem, byte[] Hash) ReadFiles()
    {
        byte[] certificate;
        byte[] key;
        try
        {
            certificate = File.ReadAllBytes(_certificatePath);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CertificateLoadException($"cannot read the certificate file {_certificatePath}: {e.Message}", e);
        }

        try
        {
            key = File.ReadAllBytes(_keyPath);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CertificateLoadException($"cannot read the key file {_keyPath}: {e.Message}", e);
        }

        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        sha.AppendData(certificate);
        sha.AppendData(BitConverter.GetBytes(certificate.Length)); // so moving bytes between the files changes the hash
        sha.AppendData(key);
        var hash = sha.GetHashAndReset();
        return (Encoding.UTF8.GetString(certificate), Encoding.UTF8.GetString(key), hash);
    }

    private Snapshot Parse(string certificatePem, string keyPem, byte[] hash, long generation)
    {
        var (leaf, intermediates) = PemCertificateLoader.Load(certificatePem, keyPem, _certificatePath, _keyPath);
        SslStreamCertificateContext context;
        try
        {
            context = SslStreamCertificateContext.Create(leaf, intermediates, offline: true);
        }
        catch (Exception e) when (e is CryptographicException or ArgumentException or NotSupportedException)
        {
            leaf.Dispose();
            throw new CertificateLoadException($"cannot use the certificate {_certificatePath}: {e.Message}", e);
        }

        var identity = CertificateIdentity.GetSpiffeIdOrNull(leaf);
        return new Snapshot(
            context,
            leaf,
            identity,
            identity?.Uri ?? MeshTrust.Describe(leaf),
            new DateTimeOffset(leaf.NotBefore.ToUniversalTime(), TimeSpan.Zero),
            new DateTimeOffset(leaf.NotAfter.ToUniversalTime(), TimeSpan.Zero),
            hash,
            generation);
    }

    /// <summary>Stops watching and polling. The current certificate stays readable (connections may still use it).</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        foreach (var watcher in _watchers)
        {
            watcher.EnableRaisingEvents = false;
            watcher.Dispose();
        }

        _pollTimer?.Dispose();
        _debounceTimer?.Dispose();
        _expiryRegistration?.Dispose();
    }

    /// <summary>What one successful load produced; replaced whole, never mutated (except the expiry log level).</summary>
    private sealed class Snapshot(
        SslStreamCertificateContext context,
        X509Certificate2 leaf,
        SpiffeId? identity,
        string description,
        DateTimeOffset notBefore,
        DateTimeOffset notAfter,
        byte[] hash,
        long generation)
    {
        public SslStreamCertificateContext Context { get; } = context;
        public X509Certificate2 Leaf { get; } = leaf;
        public SpiffeId? Identity { get; } = identity;

        /// <summary>The SPIFFE ID, else the subject or serial: how logs name the certificate.</summary>
        public string Description { get; } = description;
        public DateTimeOffset NotBefore { get; } = notBefore;
        public DateTimeOffset NotAfter { get; } = notAfter;
        public byte[] Hash { get; } = hash;
        public long Generation { get; } = generation;

        /// <summary>0 none, 1 the "expires soon" warning, 2 the "expired" error has been logged.</summary>
        public int ExpiryLevelLogged;
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 4301, Level = LogLevel.Information, Message = "Certificate {Name}: loaded {Certificate}, valid until {NotAfter:u}")]
        public static partial void Loaded(ILogger logger, string name, string certificate, DateTimeOffset notAfter);

        [LoggerMessage(EventId = 4302, Level = LogLevel.Information, Message = "Certificate {Name}: reloaded {Certificate}, valid until {NotAfter:u} (generation {Generation}); new handshakes use it, established connections keep theirs")]
        public static partial void Reloaded(ILogger logger, string name, string certificate, DateTimeOffset notAfter, long generation);

        [LoggerMessage(EventId = 4303, Level = LogLevel.Warning, Message = "Certificate {Name}: the changed files cannot be used ({Error}); still presenting {Certificate}, valid until {NotAfter:u}. Retried when the files change again")]
        public static partial void ReloadFailed(ILogger logger, string name, string error, string certificate, DateTimeOffset notAfter);

        [LoggerMessage(EventId = 4304, Level = LogLevel.Warning, Message = "Certificate {Name}: {Certificate} expires at {NotAfter:u}, in {Remaining}; it should have been rotated by now")]
        public static partial void ExpiresSoon(ILogger logger, string name, string certificate, DateTimeOffset notAfter, TimeSpan remaining);

        [LoggerMessage(EventId = 4305, Level = LogLevel.Error, Message = "Certificate {Name}: {Certificate} expired at {NotAfter:u}; peers will refuse it until the files are replaced")]
        public static partial void Expired(ILogger logger, string name, string certificate, DateTimeOffset notAfter);

        [LoggerMessage(EventId = 4306, Level = LogLevel.Warning, Message = "Certificate {Name}: cannot watch {Directory} ({Error}); changes are noticed by polling every {Interval}")]
        public static partial void WatchUnavailable(ILogger logger, string name, string directory, TimeSpan interval, string error);

        [LoggerMessage(EventId = 4307, Level = LogLevel.Error, Message = "Certificate {Name}: checking the files failed")]
        public static partial void CheckFailed(ILogger logger, Exception exception, string name);
    }
}
