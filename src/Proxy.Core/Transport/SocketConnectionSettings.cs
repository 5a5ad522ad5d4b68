using System.IO.Pipelines;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Proxy.Core.Transport.Epoll;

namespace Proxy.Core.Transport;

/// <summary>
/// What all connections of one listener or connector share: options, the buffer pool and the
/// schedulers. Created once; hands each new connection its pipe options.
/// </summary>
internal sealed class SocketConnectionSettings : IDisposable
{
    private readonly IoQueue[] _ioQueues;
    private readonly PipeScheduler _appScheduler;
    private readonly bool _ownsPool;
    private int _nextQueue;
    private (PipeOptions Input, PipeOptions Output)[]? _pipeOptions;

    public SocketConnectionSettings(SocketTransportOptions options, ILoggerFactory? loggerFactory, PinnedBlockMemoryPool? pool = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        Options = options;
        _ownsPool = pool is null;
        Pool = pool ?? new PinnedBlockMemoryPool(options.ReadBufferSize, options.MaxPooledBlocks);
        if (Pool.BlockSize != options.ReadBufferSize)
        {
            throw new ArgumentException("The pool's block size must equal ReadBufferSize.", nameof(pool));
        }

        Logger = (loggerFactory ?? NullLoggerFactory.Instance).CreateLogger("Proxy.Core.Transport.SocketConnection");
        Loops = options.IoThreads > 0 && EpollLoopGroup.IsSupported ? EpollLoopGroup.GetShared(options.IoThreads, Logger, options.IoUring) : null;
        _appScheduler = options.InlineScheduling ? PipeScheduler.Inline : PipeScheduler.ThreadPool;
        _ioQueues = new IoQueue[options.InlineScheduling ? 0 : options.IoQueueCount];
        for (var i = 0; i < _ioQueues.Length; i++)
        {
            _ioQueues[i] = new IoQueue();
        }

        // On Linux the socket engine already completes operations on a pool thread (or inline on the
        // epoll thread when inline completions are on): scheduling the completion again would be a second hop.
        SocketScheduler = OperatingSystem.IsWindows() && !options.InlineScheduling ? PipeScheduler.ThreadPool : PipeScheduler.Inline;
    }

    public SocketTransportOptions Options { get; }

    public PinnedBlockMemoryPool Pool { get; }

    public ILogger Logger { get; }

    /// <summary>The event loops that drive the sockets; null when .NET's socket engine does.</summary>
    public EpollLoopGroup? Loops { get; }

    /// <summary>Scheduler for socket completions.</summary>
    public PipeScheduler SocketScheduler { get; }

    /// <summary>
    /// The pipes of one new connection: the input (socket to application) and the output (application to socket).
    /// With inline scheduling (the default) they are <see cref="InlinePipe"/>s: every continuation runs where the other
    /// end completes it anyway, and they cost less per message than <see cref="Pipe"/>. They give their memory back when
    /// empty, so an idle connection holds no block. Otherwise <see cref="Pipe"/>s on the configured schedulers.
    /// </summary>
    public (PipeReader InputReader, PipeWriter InputWriter, PipeReader OutputReader, PipeWriter OutputWriter) CreatePipes()
    {
        if (Options.InlineScheduling)
        {
            var maxRead = Options.MaxReadBufferSize ?? 0;
            var maxWrite = Options.MaxWriteBufferSize ?? 0;
            var input = new InlinePipe(Pool, Pool.BlockSize, maxRead, maxRead / 2, keepSegment: false);
            var output = new InlinePipe(Pool, Pool.BlockSize, maxWrite, maxWrite / 2, keepSegment: false);
            return (input.Reader, input.Writer, output.Reader, output.Writer);
        }

        var (inputOptions, outputOptions) = CreatePipeOptions();
        var inputPipe = new Pipe(inputOptions);
        var outputPipe = new Pipe(outputOptions);
        return (inputPipe.Reader, inputPipe.Writer, outputPipe.Reader, outputPipe.Writer);
    }

    /// <summary>Pipe options for one new connection (input, output), spreading connections over I/O queues.</summary>
    public (PipeOptions Input, PipeOptions Output) CreatePipeOptions()
    {
        // Built once per scheduler (PipeOptions are immutable): two allocations fewer per connection.
        var all = _pipeOptions ??= BuildPipeOptions();
        return all.Length == 1 ? all[0] : all[(int)((uint)Interlocked.Increment(ref _nextQueue) % (uint)all.Length)];
    }

    private (PipeOptions Input, PipeOptions Output)[] BuildPipeOptions()
    {
        PipeScheduler[] schedulers = Options.InlineScheduling ? [PipeScheduler.Inline]
            : _ioQueues.Length == 0 ? [PipeScheduler.ThreadPool]
            : _ioQueues;
        var maxRead = Options.MaxReadBufferSize ?? 0;
        var maxWrite = Options.MaxWriteBufferSize ?? 0;
        var all = new (PipeOptions, PipeOptions)[schedulers.Length];
        for (var i = 0; i < schedulers.Length; i++)
        {
            var input = new PipeOptions(
                pool: Pool,
                readerScheduler: _appScheduler,
                writerScheduler: schedulers[i],
                pauseWriterThreshold: maxRead,
                resumeWriterThreshold: maxRead / 2,
                minimumSegmentSize: Pool.BlockSize,
                useSynchronizationContext: false);
            var output = new PipeOptions(
                pool: Pool,
                readerScheduler: schedulers[i],
                writerScheduler: _appScheduler,
                pauseWriterThreshold: maxWrite,
                resumeWriterThreshold: maxWrite / 2,
                minimumSegmentSize: Pool.BlockSize,
                useSynchronizationContext: false);
            all[i] = (input, output);
        }

        return all;
    }

    public void Dispose()
    {
        if (_ownsPool)
        {
            Pool.Dispose();
        }
    }
}
