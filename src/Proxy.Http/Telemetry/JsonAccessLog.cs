using System.Buffers;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Proxy.Core.Metrics;
using Proxy.Http.Forwarding;

namespace Proxy.Http.Telemetry;

/// <summary>Tuning of <see cref="JsonAccessLog"/>.</summary>
public sealed record JsonAccessLogOptions
{
    /// <summary>
    /// Size of each of the two buffers (bytes). Entries that arrive while the active buffer is full are dropped and
    /// counted; an entry longer than a buffer is always dropped. Default 256 KiB (about 600 typical lines).
    /// </summary>
    public int BufferSize { get; init; } = 256 * 1024;

    /// <summary>
    /// Longest time an entry waits in the buffer before it is written (the writer also wakes as soon as the buffer is
    /// half full). Default 1 s, like Envoy's access log flush interval. <see cref="Timeout.InfiniteTimeSpan"/>: only
    /// when half full, and on dispose.
    /// </summary>
    public TimeSpan FlushInterval { get; init; } = TimeSpan.FromSeconds(1);
}

/// <summary>
/// The JSON access log: one object per line (fields in <c>README.md</c> beside this file), to stdout or appended
/// to a file. Never blocks the forwarding path:
/// <code>
///  request thread:  format into a per-thread scratch buffer ──► lock { copy into the active buffer, or drop + count }
///  writer thread:   wait (flush interval, or woken at half full) ──► lock { swap active/spare } ──► write spare, flush
/// </code>
/// The lock is held only for a copy or a swap; the writer thread does the (blocking) I/O. When the sink is slower
/// than the traffic the active buffer fills and entries are dropped and counted (<see cref="Dropped"/>,
/// <c>proxy_access_log_dropped</c>), they never queue without bound. <see cref="DisposeAsync"/> writes what is buffered.
/// Steady state allocates nothing per entry.
/// </summary>
public sealed partial class JsonAccessLog : IAsyncDisposable
{
    /// <summary>The <see cref="Open"/> target that selects standard output.</summary>
    public const string StdoutTarget = "stdout";

    // The scratch writer of the current thread: formatting happens outside the lock, so each thread needs its own.
    // Kept per thread (not per log) because a thread formats one entry at a time whatever log it goes to.
    [ThreadStatic]
    private static Scratch? t_scratch;

    private readonly object _gate = new();
    private readonly Stream _stream;
    private readonly bool _ownsStream;
    private readonly TimeProvider _timeProvider;
    private readonly ProxyMetrics? _metrics;
    private readonly ILogger _logger;
    private readonly TimeSpan _flushInterval;
    private readonly int _wakeThreshold;
    private readonly TaskCompletionSource _writerDone = new(TaskCreationOptions.RunContinuationsAsynchronously);

    // Guarded by _gate.
    private byte[] _active;
    private int _activeLength;
    private int _activeEntries;
    private bool _writerWaiting;
    private bool _closing;

    // Owned by the writer thread.
    private byte[] _spare;

    private long _dropped;
    private long _written;

    /// <summary>
    /// A log writing to <paramref name="stream"/> (which must be writable; written by one background thread).
    /// <paramref name="metrics"/> receives <c>proxy_access_log_dropped</c>; time comes from <paramref name="timeProvider"/>.
    /// </summary>
    public JsonAccessLog(
        Stream stream,
        bool ownsStream,
        ProxyMetrics? metrics = null,
        TimeProvider? timeProvider = null,
        JsonAccessLogOptions? options = null,
        ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(stream);
        if (!stream.CanWrite)
        {
            throw new ArgumentException("The access log stream is not writable.", nameof(stream));
        }

        options ??= new JsonAccessLogOptions();
        if (options.BufferSize < 1024)
        {
            throw new ArgumentOutOfRangeException(nameof(options), options.BufferSize, "The access log buffer size must be at least 1024 bytes.");
        }

        if (options.FlushInterval <= TimeSpan.Zero && options.FlushInterval != Timeout.InfiniteTimeSpan)
        {
            throw new ArgumentOutOfRangeException(nameof(options), options.FlushInterval, "The access log flush interval must be positive (or infinite).");
        }

        _stream = stream;
        _ownsStream = ownsStream;
        _metrics = metrics;
        _timeProvider = timeProvider ?? TimeProvider.System;
        _logger = logger ?? NullLogger.Instance;
        _flushInterval = options.FlushInterval;
        _wakeThreshold = options.BufferSize / 2;
        _active = ArrayPool<byte>.Shared.Rent(options.BufferSize);
        _spare = ArrayPool<byte>.Shared.Rent(options.BufferSize);

        // A dedicated thread, not a pool task: it blocks in Write (files, pipes, a terminal) and must not take a
        // pool thread that the forwarding path needs (inline socket completions run there).
        var thread = new Thread(static state => ((JsonAccessLog)state!).WriterLoop())
        {
            IsBackground = true,
            Name = "access-log",
        };
        thread.Start(this);
    }

    /// <summary>
    /// Opens the access log on <paramref name="target"/>: <see cref="StdoutTarget"/> ("stdout") for standard output,
    /// anything else is a file path, created if missing and appended to (shared for reading, renamable by log rotation).
    /// </summary>
    public static JsonAccessLog Open(
        string target,
        ProxyMetrics? metrics = null,
        TimeProvider? timeProvider = null,
        JsonAccessLogOptions? options = null,
        ILogger? logger = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(target);
        Stream stream = string.Equals(target, StdoutTarget, StringComparison.Ordinal)
            ? Console.OpenStandardOutput() // a duplicate of fd 1: disposing it leaves the process's stdout open
            : new FileStream(target, FileMode.Append, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete, bufferSize: 0);
        return new JsonAccessLog(stream, ownsStream: true, metrics, timeProvider, options, logger);
    }

    /// <summary>Entries dropped so far: the buffer was full, the entry was larger than a buffer, the log was closing, or a write failed.</summary>
    public long Dropped => Interlocked.Read(ref _dropped);

    /// <summary>Entries handed to the stream so far.</summary>
    public long Written => Interlocked.Read(ref _written);

    /// <summary>Formats <paramref name="record"/> and queues the line. Never blocks on I/O; drops (and counts) when the buffer is full.</summary>
    public void Write(in HttpRequestRecord record)
    {
        var scratch = t_scratch ??= new Scratch();
        var line = scratch.Format(in record, _timeProvider.GetUtcNow());
        if (!TryEnqueue(line))
        {
            Interlocked.Increment(ref _dropped);
            _metrics?.AccessLogDropped.Add(1);
        }
    }

    private bool TryEnqueue(ReadOnlySpan<byte> line)
    {
        lock (_gate)
        {
            if (_closing || line.Length > _active.Length - _activeLength)
            {
                return false;
            }

            line.CopyTo(_active.AsSpan(_activeLength));
            _activeLength += line.Length;
            _activeEntries++;
            if (_writerWaiting && _activeLength >= _wakeThreshold)
            {
                // Wake the writer early so the buffer does not fill; once per wait, not once per entry.
                _writerWaiting = false;
                Monitor.Pulse(_gate);
            }

            return true;
        }
    }

    private void WriterLoop()
    {
        try
        {
            while (true)
            {
                int length;
                int entries;
                lock (_gate)
                {
                    if (!_closing && _activeLength < _wakeThreshold)
                    {
                        _writerWaiting = true;
                        Monitor.Wait(_gate, _flushInterval);
                        _writerWaiting = false;
                    }

                    if (_activeLength == 0)
                    {
                        if (_closing)
                        {
                            return;
                        }

                        continue;
                    }

                    (_active, _spare) = (_spare, _active);
                    length = _activeLength;
                    entries = _activeEntries;
                    _activeLength = 0;
                    _activeEntries = 0;
                }

                WriteBatch(length, entries);
            }
        }
        finally
        {
            _writerDone.TrySetResult();
        }
    }

    private void WriteBatch(int length, int entries)
    {
        try
        {
            _stream.Write(_spare, 0, length);
            _stream.Flush();
            Interlocked.Add(ref _written, entries);
        }
        catch (Exception ex)
        {
            // Whatever the sink throws, the writer thread lives on (an exception here would end the process).
            Interlocked.Add(ref _dropped, entries);
            _metrics?.AccessLogDropped.Add(entries);
            Log.WriteFailed(_logger, entries, ex.GetType().Name, ex.Message);
        }
    }

    /// <summary>Stops accepting entries, writes what is buffered, then closes the stream if this log owns it.</summary>
    public async ValueTask DisposeAsync()
    {
        lock (_gate)
        {
            if (_closing)
            {
                return;
            }

            _closing = true;
            Monitor.Pulse(_gate);
        }

        await _writerDone.Task.ConfigureAwait(false);
        ArrayPool<byte>.Shared.Return(_active);
        ArrayPool<byte>.Shared.Return(_spare);
        if (_ownsStream)
        {
            await _stream.DisposeAsync().ConfigureAwait(false);
        }
    }

    /// <summary>A thread's reusable formatting state: a growable buffer and a writer reset onto it for every entry.</summary>
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001", Justification = "Lives as long as its thread; the writer holds no unmanaged resource.")]
    private sealed class Scratch
    {
        private readonly ArrayBufferWriter<byte> _buffer = new(1024);
        private readonly Utf8JsonWriter _writer;

        public Scratch() => _writer = new Utf8JsonWriter(_buffer, AccessLogFormatter.WriterOptions);

        public ReadOnlySpan<byte> Format(in HttpRequestRecord record, DateTimeOffset time)
        {
            _buffer.ResetWrittenCount();
            _writer.Reset(_buffer);
            AccessLogFormatter.Write(_writer, in record, time);
            _buffer.GetSpan(1)[0] = (byte)'\n';
            _buffer.Advance(1);
            return _buffer.WrittenSpan;
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 2501, Level = LogLevel.Warning, Message = "Access log: writing {Entries} entries failed ({Error}: {Detail}); they are dropped")]
        public static partial void WriteFailed(ILogger logger, int entries, string error, string detail);
    }
}
