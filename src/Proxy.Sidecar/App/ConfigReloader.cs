using Microsoft.Extensions.Logging;
using Proxy.Core.Configuration;
using Proxy.Http.Authorization;

namespace Proxy.Sidecar.App;

/// <summary>Where the running configuration came from: the config file and the flags given with it.</summary>
internal sealed record ConfigSource(string Path, IReadOnlyDictionary<string, string> Flags);

/// <summary>What one reload did.</summary>
internal enum ReloadOutcome
{
    /// <summary>The file was valid; its authorization section is in force (other changed sections need a restart).</summary>
    Applied,

    /// <summary>The file could not be read or is invalid: the previous configuration stays in force.</summary>
    Rejected,
}

/// <summary>
/// Watches the config file. On a change it re-reads and validates the whole file (with the same flags); a valid file's
/// <c>authorization</c> section is applied at once (a new <see cref="AuthorizationPolicies"/> swapped into the shared
/// <see cref="AuthorizationState"/>); changes to any other section are logged as needing a restart (a full reload is a
/// later issue). An invalid file keeps the old policies and logs every error.
/// </summary>
internal sealed partial class ConfigReloader : IDisposable
{
    private readonly ConfigSource _source;
    private readonly AuthorizationState _authorization;
    private readonly ILogger _logger;
    private readonly Lock _lock = new();
    private readonly ITimer _debounce;
    private ProxyConfig _current;
    private FileSystemWatcher? _watcher;

    public ConfigReloader(ConfigSource source, ProxyConfig current, AuthorizationState authorization, ILogger logger, TimeProvider? time = null)
    {
        _source = source;
        _current = current;
        _authorization = authorization;
        _logger = logger;

        // Editors write a file in several steps (truncate, write, rename): act once they settle.
        _debounce = (time ?? TimeProvider.System).CreateTimer(static s => ((ConfigReloader)s!).ReloadNow(), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
    }

    /// <summary>Raised after every reload attempt (tests wait on it).</summary>
    public event Action<ReloadOutcome>? Reloaded;

    public ProxyConfig Current => _current;

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

    /// <summary>Reads, validates and applies the file now.</summary>
    public void ReloadNow()
    {
        ReloadOutcome outcome;
        lock (_lock)
        {
            outcome = Reload();
        }

        Reloaded?.Invoke(outcome);
    }

    private ReloadOutcome Reload()
    {
        string json;
        try
        {
            json = File.ReadAllText(_source.Path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            LogRejected(_logger, _source.Path, $"cannot read it: {e.Message}");
            return ReloadOutcome.Rejected;
        }

        var loaded = ConfigLoader.Load(_source.Flags, json);
        if (!loaded.Ok)
        {
            LogRejected(_logger, _source.Path, string.Join("; ", loaded.Errors));
            return ReloadOutcome.Rejected;
        }

        var next = loaded.Config!;
        var policies = new AuthorizationPolicies(next.Authorization);
        _authorization.Update(policies);
        foreach (var warning in policies.Warnings)
        {
            LogPolicyWarning(_logger, warning);
        }

        if (ConfigJson.ToJson(next with { Authorization = _current.Authorization }, indented: false) != ConfigJson.ToJson(_current, indented: false))
        {
            LogNeedsRestart(_logger, _source.Path);
        }

        LogApplied(_logger, _source.Path, next.Authorization.Policies.Count);
        _current = next;
        return ReloadOutcome.Applied;
    }

    public void Dispose()
    {
        _watcher?.Dispose();
        _debounce.Dispose();
    }

    [LoggerMessage(EventId = 120, Level = LogLevel.Information, Message = "Config {Path} reloaded: {Count} authorization policies in force")]
    private static partial void LogApplied(ILogger logger, string path, int count);

    [LoggerMessage(EventId = 121, Level = LogLevel.Error, Message = "Config {Path} changed but is not valid; the previous configuration stays in force: {Errors}")]
    private static partial void LogRejected(ILogger logger, string path, string errors);

    [LoggerMessage(EventId = 122, Level = LogLevel.Warning, Message = "Config {Path}: sections other than authorization changed; they take effect after a restart")]
    private static partial void LogNeedsRestart(ILogger logger, string path);

    [LoggerMessage(EventId = 123, Level = LogLevel.Warning, Message = "Authorization: {Warning}")]
    internal static partial void LogPolicyWarning(ILogger logger, string warning);
}
