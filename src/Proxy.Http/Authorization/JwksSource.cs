using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.IdentityModel.Tokens;

namespace Proxy.Http.Authorization;

/// <summary>
/// The signing keys of one JWKS (a file, or a URL fetched with HttpClient), kept as an immutable snapshot swapped on
/// refresh: every <see cref="JwtConfig.JwksRefresh"/> and, rate-limited, when a token names a <c>kid</c> the snapshot
/// lacks (key rotation at the issuer). A failed refresh keeps the old keys and is logged.
/// </summary>
public sealed partial class JwksSource : IDisposable
{
    private readonly string _location;
    private readonly TimeSpan _refresh;
    private readonly TimeSpan _minMissInterval;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly HttpClient? _http;
    private readonly Lock _lock = new();
    private volatile JwksKeys _keys = JwksKeys.Empty;
    private ITimer? _timer;
    private Task<bool>? _refreshing;
    private long _lastMissRefresh;
    private bool _anyMissRefresh;
    private long _refreshes;

    /// <param name="location">A file path, or an http(s) URL.</param>
    /// <param name="refresh">Periodic refresh interval.</param>
    /// <param name="minMissInterval">Least time between two refreshes caused by unknown key ids.</param>
    /// <param name="handler">HTTP handler for URL sources (tests: a handler that trusts a test certificate); null: the default.</param>
    public JwksSource(string location, TimeSpan refresh, TimeSpan? minMissInterval = null, TimeProvider? time = null, ILogger? logger = null, HttpMessageHandler? handler = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(location);
        _location = location;
        _refresh = refresh;
        _minMissInterval = minMissInterval ?? TimeSpan.FromSeconds(10);
        _time = time ?? TimeProvider.System;
        _logger = logger ?? NullLogger.Instance;
        if (IsUrl(location))
        {
            _http = handler is null ? new HttpClient() : new HttpClient(handler, disposeHandler: false);
            _http.Timeout = TimeSpan.FromSeconds(10);
        }
    }

    public string Location => _location;

    /// <summary>The current keys.</summary>
    public JwksKeys Keys => _keys;

    /// <summary>Successful loads so far (tests wait on it).</summary>
    public long Refreshes => Interlocked.Read(ref _refreshes);

    private static bool IsUrl(string location) => location.StartsWith("http://", StringComparison.OrdinalIgnoreCase) || location.StartsWith("https://", StringComparison.OrdinalIgnoreCase);

    /// <summary>Loads the keys once (a failure is logged, the keys stay empty) and starts the periodic refresh.</summary>
    public async Task StartAsync(CancellationToken cancellationToken = default)
    {
        await RefreshAsync(cancellationToken).ConfigureAwait(false);
        _timer = _time.CreateTimer(static s => _ = ((JwksSource)s!).RefreshAsync(CancellationToken.None), this, _refresh, _refresh);
    }

    /// <summary>Re-reads the JWKS; true when new keys were installed. Concurrent callers share one refresh.</summary>
    public Task<bool> RefreshAsync(CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            if (_refreshing is { IsCompleted: false } running)
            {
                return running;
            }

            return _refreshing = LoadAsync(cancellationToken);
        }
    }

    /// <summary>
    /// A token named a key id the snapshot lacks: refresh now unless a miss-caused refresh ran less than the minimum
    /// interval ago (a flood of tokens with made-up key ids must not become a flood of fetches).
    /// </summary>
    public async ValueTask<bool> RefreshForUnknownKeyAsync(CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            var now = _time.GetTimestamp();
            if (_anyMissRefresh && _time.GetElapsedTime(_lastMissRefresh, now) < _minMissInterval)
            {
                return false;
            }

            _anyMissRefresh = true;
            _lastMissRefresh = now;
        }

        return await RefreshAsync(cancellationToken).ConfigureAwait(false);
    }

    private async Task<bool> LoadAsync(CancellationToken cancellationToken)
    {
        await Task.Yield();
        string json;
        try
        {
            json = _http is not null
                ? await _http.GetStringAsync(new Uri(_location), cancellationToken).ConfigureAwait(false)
                : await File.ReadAllTextAsync(_location, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or HttpRequestException or TaskCanceledException)
        {
            LogFetchFailed(_logger, _location, e.Message);
            return false;
        }

        try
        {
            var set = new JsonWebKeySet(json);
            var keys = set.GetSigningKeys();
            var kids = new HashSet<string>(StringComparer.Ordinal);
            foreach (var k in keys)
            {
                if (k.KeyId is { } kid)
                {
                    kids.Add(kid);
                }
            }

            _keys = new JwksKeys(keys, kids);
            Interlocked.Increment(ref _refreshes);
            LogLoaded(_logger, _location, keys.Count);
            return true;
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or System.Text.Json.JsonException)
        {
            LogFetchFailed(_logger, _location, $"not a valid JWKS ({e.Message})");
            return false;
        }
    }

    public void Dispose()
    {
        _timer?.Dispose();
        _http?.Dispose();
    }

    [LoggerMessage(EventId = 3201, Level = LogLevel.Warning, Message = "JWKS {Location}: refresh failed, keeping the previous keys: {Reason}")]
    private static partial void LogFetchFailed(ILogger logger, string location, string reason);

    [LoggerMessage(EventId = 3202, Level = LogLevel.Debug, Message = "JWKS {Location}: {Count} signing keys loaded")]
    private static partial void LogLoaded(ILogger logger, string location, int count);
}

/// <summary>One JWKS snapshot: the signing keys and their key ids.</summary>
public sealed class JwksKeys(IList<SecurityKey> keys, IReadOnlySet<string> kids)
{
    public static JwksKeys Empty { get; } = new([], new HashSet<string>());

    public IList<SecurityKey> Keys { get; } = keys;

    public IReadOnlySet<string> KeyIds { get; } = kids;
}
