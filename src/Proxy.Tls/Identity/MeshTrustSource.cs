using System.Security.Cryptography;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Proxy.Core.Metrics;
using Proxy.Tls.Certificates;

namespace Proxy.Tls.Identity;

/// <summary>Where the mesh stages read the trust they verify peers by, once per handshake (so a reload applies to new connections).</summary>
public interface IMeshTrustSource
{
    MeshTrust Current { get; }
}

/// <summary>
/// The mesh trust bundle from a PEM file, reloaded when the file changes (a root CA rotation: first a bundle with the old
/// and the new root, then workload certificates from the new one, then the new root alone), without touching established
/// connections. The directory is watched and the file re-read every <c>pollInterval</c> as a fallback; a changed bundle
/// is swapped in only when it parses and holds CA certificates, else the old one stays and a warning says why (once per
/// bad content). Counted in <c>proxy_tls_certificate_reloads_total{name, result}</c>.
/// </summary>
public sealed partial class FileMeshTrustSource : IMeshTrustSource, IDisposable
{
    private readonly string _path;
    private readonly ILogger _logger;
    private readonly ProxyMetrics? _metrics;
    private readonly Lock _lock = new();
    private readonly FileSystemWatcher? _watcher;
    private readonly ITimer _poll;
    private MeshTrust _current;
    private byte[] _hash;
    private byte[]? _failedHash;
    private int _disposed;

    /// <exception cref="CertificateLoadException">The bundle cannot be used now.</exception>
    public FileMeshTrustSource(string path, string name, TimeSpan pollInterval, ILogger? logger = null, ProxyMetrics? metrics = null, TimeProvider? time = null)
    {
        _path = Path.GetFullPath(path);
        Name = name;
        _logger = logger ?? NullLogger.Instance;
        _metrics = metrics;
        var pem = Read(out _hash);
        _current = MeshTrust.FromPem(pem, source: _path);
        try
        {
            _watcher = new FileSystemWatcher(Path.GetDirectoryName(_path)!) { IncludeSubdirectories = false };
            _watcher.Changed += (_, _) => CheckNow();
            _watcher.Created += (_, _) => CheckNow();
            _watcher.Renamed += (_, _) => CheckNow();
            _watcher.EnableRaisingEvents = true;
        }
        catch (Exception e) when (e is IOException or ArgumentException or UnauthorizedAccessException or PlatformNotSupportedException)
        {
            _watcher?.Dispose();
            _watcher = null;
        }

        _poll = (time ?? TimeProvider.System).CreateTimer(static s => ((FileMeshTrustSource)s!).CheckNow(), this, pollInterval, pollInterval);
    }

    public string Name { get; }

    public MeshTrust Current => Volatile.Read(ref _current);

    /// <summary>Re-reads the file and swaps the trust if its content changed and is valid. True when a new trust was loaded.</summary>
    public bool CheckNow()
    {
        if (Volatile.Read(ref _disposed) != 0)
        {
            return false;
        }

        lock (_lock)
        {
            string pem;
            byte[] hash;
            try
            {
                pem = Read(out hash);
            }
            catch (CertificateLoadException)
            {
                // Mid-rename or briefly missing: the next event or poll sees the final file.
                return false;
            }

            if (hash.AsSpan().SequenceEqual(_hash) || (_failedHash is not null && hash.AsSpan().SequenceEqual(_failedHash)))
            {
                return false;
            }

            MeshTrust next;
            try
            {
                next = MeshTrust.FromPem(pem, source: _path);
            }
            catch (CertificateLoadException e)
            {
                _failedHash = hash;
                _metrics?.CertificateReloads.Add(1, new KeyValuePair<string, object?>("name", Name), new KeyValuePair<string, object?>("result", "failure"));
                LogReloadFailed(_logger, Name, e.Message);
                return false;
            }

            // The old trust is left to the collector: handshakes in progress may still be verifying with it.
            Volatile.Write(ref _current, next);
            _hash = hash;
            _failedHash = null;
            _metrics?.CertificateReloads.Add(1, new KeyValuePair<string, object?>("name", Name), new KeyValuePair<string, object?>("result", "success"));
            var domains = string.Join(", ", next.TrustDomains);
            LogReloaded(_logger, Name, next.Roots.Count, domains);
            return true;
        }
    }

    private string Read(out byte[] hash)
    {
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(_path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CertificateLoadException($"cannot read the trust bundle {_path}: {e.Message}", e);
        }

        hash = SHA256.HashData(bytes);
        return System.Text.Encoding.ASCII.GetString(bytes);
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _watcher?.Dispose();
        _poll.Dispose();
    }

    [LoggerMessage(EventId = 4311, Level = LogLevel.Information, Message = "Trust bundle {Name} reloaded: {Roots} root(s), trust domain(s) {TrustDomains}")]
    private static partial void LogReloaded(ILogger logger, string name, int roots, string trustDomains);

    [LoggerMessage(EventId = 4312, Level = LogLevel.Warning, Message = "Trust bundle {Name} changed but cannot be used, keeping the previous one: {Reason}")]
    private static partial void LogReloadFailed(ILogger logger, string name, string reason);
}
