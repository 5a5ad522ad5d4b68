using System.Diagnostics.Metrics;
using Microsoft.Extensions.Logging;
using Proxy.Core.Configuration;
using Proxy.Tls.Certificates;

namespace Proxy.Sidecar.App;

/// <summary>Where the running configuration came from: the config file and the flags given with it.</summary>
internal sealed record ConfigSource(string Path, IReadOnlyDictionary<string, string> Flags);

/// <summary>What one reload did.</summary>
internal enum ReloadOutcome
{
    /// <summary>The file was valid; what it changes that can change live is in force (see <see cref="ReloadResult.RestartRequired"/> for the rest).</summary>
    Applied,

    /// <summary>The file could not be read or is invalid: the previous configuration stays in force.</summary>
    Rejected,
}

/// <summary>The outcome of one reload with what it changed, what waits for a restart, or why it was rejected.</summary>
internal sealed record ReloadResult(ReloadOutcome Outcome, IReadOnlyList<string> Errors, IReadOnlyList<string> Applied, IReadOnlyList<string> RestartRequired, long Generation)
{
    /// <summary>The answer of <c>POST /reload</c>: one line per error, change or pending restart.</summary>
    public string Describe()
    {
        var text = new System.Text.StringBuilder();
        if (Outcome == ReloadOutcome.Rejected)
        {
            text.Append("rejected: the previous configuration stays in force\n");
            foreach (var error in Errors)
            {
                text.Append("error: ").Append(error).Append('\n');
            }

            return text.ToString();
        }

        text.Append(Applied.Count == 0 ? "applied: nothing changed that applies live" : "applied").Append($" (configuration generation {Generation})\n");
        foreach (var change in Applied)
        {
            text.Append("changed: ").Append(change).Append('\n');
        }

        foreach (var pending in RestartRequired)
        {
            text.Append("needs restart: ").Append(pending).Append('\n');
        }

        return text.ToString();
    }
}

/// <summary>
/// Reloads the config file: when it changes (watched, debounced: editors write in several steps) and on
/// <c>POST /reload</c>. Every reload reads and validates the whole file with the flags the process started with; an
/// unreadable or invalid file is rejected with every error logged, and the configuration in force stays. A valid one
/// goes to the host's apply step (<see cref="SidecarHost.ApplyReload"/>), which swaps in one new snapshot and says what
/// changed and what needs a restart; both are logged. <c>proxy_config_reloads_total{result}</c> counts the outcomes
/// and <c>proxy_config_last_reload_success_timestamp_seconds</c> says when the last one was applied.
/// </summary>
internal sealed partial class ConfigReloader : IDisposable
{
    private readonly ConfigSource _source;
    private readonly Func<ProxyConfig, CancellationToken, Task<ConfigDiff>> _apply;
    private readonly ILogger _logger;
    private readonly SemaphoreSlim _lock = new(1, 1);
    private readonly ITimer _debounce;
    private readonly TimeProvider _time;
    private readonly Counter<long> _reloads;
    private ProxyConfig _current;
    private long _generation = 1;
    private long _lastSuccessUnixMs;
    private FileSystemWatcher? _watcher;

    public ConfigReloader(ConfigSource source, ProxyConfig current, Func<ProxyConfig, CancellationToken, Task<ConfigDiff>> apply, Meter meter, ILogger logger, TimeProvider? time = null)
    {
        _source = source;
        _current = current;
        _apply = apply;
        _logger = logger;
        _time = time ?? TimeProvider.System;
        _lastSuccessUnixMs = _time.GetUtcNow().ToUnixTimeMilliseconds();
        _reloads = meter.CreateCounter<long>("proxy_config_reloads", "{reload}", "Config reloads (file change or POST /reload), by result (applied, rejected).");
        meter.CreateObservableGauge(
            "proxy_config_last_reload_success_timestamp_seconds",
            () => Volatile.Read(ref _lastSuccessUnixMs) / 1000.0,
            "s",
            "When the configuration in force was applied (Unix time; the start, until a reload succeeds).");
        meter.CreateObservableGauge("proxy_config_generation", () => Volatile.Read(ref _generation), "{generation}", "The configuration in force: 1 at start, plus one per applied reload that changed something.");
        _debounce = _time.CreateTimer(static s => _ = ((ConfigReloader)s!).ReloadAsync(), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
    }

    /// <summary>Raised after every reload attempt (tests wait on it).</summary>
    public event Action<ReloadOutcome>? Reloaded;

    /// <summary>The effective configuration in force (what <c>/config</c> shows).</summary>
    public ProxyConfig Current => Volatile.Read(ref _current);

    public void Start()
    {
        var full = Path.GetFullPath(_source.Path);
        _watcher = new FileSystemWatcher(Path.GetDirectoryName(full)!, Path.GetFileName(full))
        {
            NotifyFilter = NotifyFilters.LastWrite | NotifyFilters.Size | NotifyFilters.FileName | NotifyFilters.CreationTime,
        };
        _watcher.Changed += OnFileEvent;
        _watcher.Created += OnFileEvent;
        _watcher.Renamed += OnFileEvent;
        _watcher.EnableRaisingEvents = true;
    }

    private void OnFileEvent(object sender, FileSystemEventArgs e) => _debounce.Change(TimeSpan.FromMilliseconds(100), Timeout.InfiniteTimeSpan);

    /// <summary>Reads, validates and applies the file now (one reload at a time); never throws.</summary>
    public async Task<ReloadResult> ReloadAsync(CancellationToken cancellationToken = default)
    {
        ReloadResult result;
        await _lock.WaitAsync(cancellationToken);
        try
        {
            result = await ReloadLockedAsync(cancellationToken);
        }
        finally
        {
            _lock.Release();
        }

        _reloads.Add(1, new KeyValuePair<string, object?>("result", result.Outcome == ReloadOutcome.Applied ? "applied" : "rejected"));
        Reloaded?.Invoke(result.Outcome);
        return result;
    }

    private async Task<ReloadResult> ReloadLockedAsync(CancellationToken cancellationToken)
    {
        string json;
        try
        {
            json = await File.ReadAllTextAsync(_source.Path, cancellationToken);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return Rejected([$"cannot read {_source.Path}: {e.Message}"]);
        }

        var loaded = ConfigLoader.Load(_source.Flags, json);
        if (!loaded.Ok)
        {
            return Rejected(loaded.Errors);
        }

        ConfigDiff diff;
        try
        {
            diff = await _apply(loaded.Config!, cancellationToken);
        }
        catch (Exception e) when (e is CertificateLoadException or ArgumentException)
        {
            // A certificate file of a new TLS service, or a reference the loader cannot see: nothing was swapped.
            return Rejected([e.Message]);
        }

        if (!diff.IsEmpty)
        {
            Interlocked.Increment(ref _generation);
            Volatile.Write(ref _current, diff.Effective);
        }

        Volatile.Write(ref _lastSuccessUnixMs, _time.GetUtcNow().ToUnixTimeMilliseconds());
        foreach (var change in diff.Applied)
        {
            LogChange(_logger, _source.Path, change);
        }

        foreach (var pending in diff.RestartRequired)
        {
            LogNeedsRestart(_logger, _source.Path, pending);
        }

        var generation = Volatile.Read(ref _generation);
        LogApplied(_logger, _source.Path, diff.Applied.Count, diff.RestartRequired.Count, generation);
        return new ReloadResult(ReloadOutcome.Applied, [], diff.Applied, diff.RestartRequired, generation);
    }

    private ReloadResult Rejected(IReadOnlyList<string> errors)
    {
        LogRejected(_logger, _source.Path, errors.Count, string.Join("; ", errors));
        return new ReloadResult(ReloadOutcome.Rejected, errors, [], [], Volatile.Read(ref _generation));
    }

    public void Dispose()
    {
        _watcher?.Dispose();
        _debounce.Dispose();
    }

    [LoggerMessage(EventId = 120, Level = LogLevel.Information, Message = "Config {Path} reloaded: {Changes} change(s) applied, {Pending} waiting for a restart; configuration generation {Generation}")]
    private static partial void LogApplied(ILogger logger, string path, int changes, int pending, long generation);

    [LoggerMessage(EventId = 121, Level = LogLevel.Error, Message = "Config {Path} is not valid; the previous configuration stays in force. {Count} error(s): {Errors}")]
    private static partial void LogRejected(ILogger logger, string path, int count, string errors);

    [LoggerMessage(EventId = 122, Level = LogLevel.Warning, Message = "Config {Path}: {Change} (not applied)")]
    private static partial void LogNeedsRestart(ILogger logger, string path, string change);

    [LoggerMessage(EventId = 123, Level = LogLevel.Warning, Message = "Authorization: {Warning}")]
    internal static partial void LogPolicyWarning(ILogger logger, string warning);

    [LoggerMessage(EventId = 124, Level = LogLevel.Information, Message = "Config {Path}: {Change}")]
    private static partial void LogChange(ILogger logger, string path, string change);
}
