using System.Buffers;
using System.IO.Pipelines;
using System.Runtime.CompilerServices;
using System.Runtime.ExceptionServices;
using System.Threading.Tasks.Sources;

namespace Proxy.Core.Transport;

/// <summary>
/// A pipe for the in-process hops between the proxy's own stages (an HTTP/2 stream and the forwarder, the forwarder
/// and an HTTP/2 upstream exchange): the contract of <see cref="Pipe"/> with inline schedulers, at a lower cost per
/// message. Every continuation runs inline, on the thread that completes it (the event loop, normally).
/// </summary>
/// <remarks>
/// <para>Why not <see cref="Pipe"/>: each message through a <see cref="Pipe"/> takes its monitor five or six times
/// (writer segment, flush, read, result, advance) and, because the reader consumed everything, gives its block back
/// to the pool and rents a new one for the next message. Profiles of the HTTP/2 paths put a sixth of the CPU in those
/// monitors. Here a message costs three or four passes through one spin lock (flush, read, advance, and the first write
/// after a flush when segments are not kept), each one interlocked operation; with <c>keepSegment</c> the writer's last
/// segment is kept, so steady-state messages rent nothing.</para>
/// <para>Semantics kept from <see cref="Pipe"/>: a read returns at once while it has not examined everything it
/// was given (or after a flush, a completion or <see cref="PipeReader.CancelPendingRead"/>); a flush always wakes a
/// waiting reader; the writer pauses at <c>pauseWriterThreshold</c> unconsumed bytes (0: never) and resumes below
/// <c>resumeWriterThreshold</c>; a writer completed with an exception makes the reader's next read throw it; a
/// flush after the reader completed reports <see cref="FlushResult.IsCompleted"/>; <see cref="Reset"/> needs both
/// ends completed. One reader and one writer, each used by one thread at a time (the usual pipe rule);
/// cancellation and completion may come from any thread.</para>
/// </remarks>
public sealed class InlinePipe
{
    // A spin lock rather than a Lock: the critical sections are a few field updates, the two ends are normally on one
    // thread, and leaving costs a plain store instead of an interlocked operation (measured: Lock's enter and exit were
    // a tenth of the proxy's CPU on the HTTP/2 path).
    private int _locked;
    private readonly MemoryPool<byte>? _pool;
    private readonly int _segmentSize;
    private readonly long _pauseThreshold;
    private readonly long _resumeThreshold;
    private readonly bool _keepSegment;
    private readonly InlinePipeReader _reader;
    private readonly InlinePipeWriter _writer;

    // The segments, first to last: _head holds the first unconsumed byte (at _headIndex); the reader sees up to
    // (_commit, _commitIndex); _tail is the writer's segment (always the last one, kept when everything is consumed).
    private Segment? _head;
    private int _headIndex;
    private Segment? _commit;
    private int _commitIndex;
    private Segment? _tail;
    private Segment? _spare;

    // Writer-owned (touched only by the writer's thread, then published under the lock by a flush).
    private long _unflushed;

    // Set (under the lock) by the first GetMemory after a flush, cleared by the flush: while it is set the reader never
    // returns the writer's segment, so GetMemory may hand out its memory without the lock.
    private bool _writerActive;

    // Bytes flushed and not yet examined by the reader (Pipe's back-pressure measure), and where it last examined.
    private long _unconsumed;
    private long _lastExamined = -1;
    private bool _readerSignaled;
    private bool _writerPaused;
    private bool _cancelRead;
    private bool _cancelFlush;
    private bool _readerCompleted;
    private bool _writerCompleted;
    private Exception? _writerError;
    private Exception? _readerError;

    private bool _readWaiting;
    private ManualResetValueTaskSourceCore<ReadResult> _readCore;
    private CancellationTokenRegistration _readRegistration;
    private bool _flushWaiting;
    private ManualResetValueTaskSourceCore<FlushResult> _flushCore;
    private CancellationTokenRegistration _flushRegistration;

    /// <param name="pool">Where segments come from (null: <see cref="ArrayPool{T}.Shared"/>).</param>
    /// <param name="minimumSegmentSize">The smallest segment rented.</param>
    /// <param name="pauseWriterThreshold">Unconsumed bytes at which a flush waits (0: never).</param>
    /// <param name="resumeWriterThreshold">Unconsumed bytes below which a waiting flush completes.</param>
    /// <param name="keepSegment">
    /// Keep the writer's segment when the reader has consumed everything: no rent per message (110 against 154 ns per
    /// message in PipeHopBenchmarks), but every pipe holds a segment while it lives, so the pool must be sized for all
    /// of them (with ArrayPool's shared pool, 160 concurrent HTTP/2 exchanges holding theirs drained it and cost about
    /// 1.4 KB of allocation per request). False (the default, as <see cref="Pipe"/>): an empty pipe holds no memory.
    /// </param>
    public InlinePipe(MemoryPool<byte>? pool = null, int minimumSegmentSize = 4096, long pauseWriterThreshold = 0, long resumeWriterThreshold = 0, bool keepSegment = false)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(minimumSegmentSize, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(pauseWriterThreshold);
        ArgumentOutOfRangeException.ThrowIfNegative(resumeWriterThreshold);
        if (pauseWriterThreshold > 0 && resumeWriterThreshold > pauseWriterThreshold)
        {
            throw new ArgumentOutOfRangeException(nameof(resumeWriterThreshold), "The resume threshold is above the pause threshold.");
        }

        _pool = pool;
        _keepSegment = keepSegment;
        _segmentSize = pool is null ? minimumSegmentSize : Math.Min(minimumSegmentSize, pool.MaxBufferSize);
        _pauseThreshold = pauseWriterThreshold;
        _resumeThreshold = pauseWriterThreshold > 0 && resumeWriterThreshold == 0 ? pauseWriterThreshold / 2 : resumeWriterThreshold;
        _reader = new InlinePipeReader(this);
        _writer = new InlinePipeWriter(this);
    }

    public PipeReader Reader => _reader;

    public PipeWriter Writer => _writer;

    /// <summary>Makes a pipe whose two ends were completed usable again (its memory was already returned).</summary>
    public void Reset()
    {
        Enter();
        try
        {
            if (!_readerCompleted || !_writerCompleted)
            {
                throw new InvalidOperationException("Both the reader and the writer must be completed before the pipe is reset.");
            }

            ReleaseSegments();
            _readerCompleted = false;
            _writerCompleted = false;
            _writerError = null;
            _readerError = null;
            _readerSignaled = false;
            _cancelRead = false;
            _cancelFlush = false;
            _writerPaused = false;
            _writerActive = false;
            _unconsumed = 0;
            _unflushed = 0;
        }
        finally
        {
            Exit();
        }
    }

    // Inlined: NativeAOT kept this a call at every pipe operation (no profile to tell it is hot).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Enter()
    {
        if (Interlocked.CompareExchange(ref _locked, 1, 0) != 0)
        {
            EnterContended();
        }
    }

    private void EnterContended()
    {
        var spinner = default(SpinWait);
        do
        {
            spinner.SpinOnce();
        }
        while (Volatile.Read(ref _locked) != 0 || Interlocked.CompareExchange(ref _locked, 1, 0) != 0);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Exit() => Volatile.Write(ref _locked, 0);

    // ---- writer ----

    private Memory<byte> GetMemory(int sizeHint)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(sizeHint);
        if (_writerCompleted)
        {
            throw new InvalidOperationException("Writing is not allowed after the writer was completed.");
        }

        var need = Math.Max(sizeHint, 1);
        var tail = _tail;
        if ((_keepSegment || _writerActive) && tail is not null && tail.Capacity - tail.Written >= need)
        {
            return tail.Available.Slice(tail.Written);
        }

        return GetMemorySlow(need);
    }

    private Memory<byte> GetMemorySlow(int need)
    {
        Enter();
        try
        {
            _writerActive = true;
            var tail = _tail;
            if (tail is null || tail.Capacity - tail.Written < need)
            {
                var segment = RentSegment(need);
                if (tail is null)
                {
                    segment.Reset(0);
                    _head = _commit = segment;
                    _headIndex = _commitIndex = 0;
                    _lastExamined = 0;
                }
                else
                {
                    // The old tail's written bytes are final now (the writer moves on); a flush makes them visible.
                    segment.Reset(tail.RunningIndex + tail.Written);
                    tail.SetNext(segment);
                }

                _tail = tail = segment;
            }

            return tail.Available.Slice(tail.Written);
        }
        finally
        {
            Exit();
        }
    }

    private void Advance(int bytes)
    {
        if (bytes == 0 || Volatile.Read(ref _readerCompleted))
        {
            // As Pipe: after the reader completed, written bytes are dropped at once.
            return;
        }

        var tail = _tail;
        if (tail is null || bytes < 0 || bytes > tail.Capacity - tail.Written)
        {
            throw new ArgumentOutOfRangeException(nameof(bytes), bytes, "Advanced past the memory that was handed out.");
        }

        tail.Written += bytes;
        _unflushed += bytes;
    }

    private ValueTask<FlushResult> FlushAsync(CancellationToken cancellationToken)
    {
        if (cancellationToken.IsCancellationRequested)
        {
            return ValueTask.FromCanceled<FlushResult>(cancellationToken);
        }

        FlushResult result = default;
        Exception? flushError = null;
        var pending = false;
        bool wakeReader;
        ReadResult readResult;
        Exception? readError;
        Enter();
        try
        {
            if (_writerCompleted)
            {
                throw new InvalidOperationException("Writing is not allowed after the writer was completed.");
            }

            // As Pipe: only a flush that commits new bytes wakes the reader.
            if (_unflushed > 0)
            {
                CommitUnsynchronized();
                _readerSignaled = true;
                wakeReader = TakeWaitingReader(out readResult, out readError);
            }
            else
            {
                // Nothing to commit, but the write is over all the same (as Pipe): an empty pipe may give its block back.
                _writerActive = false;
                wakeReader = false;
                readResult = default;
                readError = null;
            }

            if (_readerCompleted)
            {
                // Nobody will read what was written: drop it (the writer's segment stays for its next write).
                DiscardUnsynchronized();
                flushError = _readerError;
                result = new FlushResult(isCanceled: TakeFlushCancel(), isCompleted: true);
            }
            else if (_writerPaused && !_cancelFlush)
            {
                // A CancelPendingFlush made before this flush is reported when it completes (as Pipe does).
                pending = true;
                _flushWaiting = true;
                _flushCore.Reset();
                if (cancellationToken.CanBeCanceled)
                {
                    _flushRegistration = cancellationToken.UnsafeRegister(static (s, token) => ((InlinePipe)s!).CancelFlushFromToken(token), this);
                }
            }
            else
            {
                result = new FlushResult(isCanceled: TakeFlushCancel(), isCompleted: false);
            }
        }
        finally
        {
            Exit();
        }

        if (wakeReader)
        {
            CompleteRead(readResult, readError);
        }

        if (flushError is not null)
        {
            ExceptionDispatchInfo.Throw(flushError);
        }

        return pending ? new ValueTask<FlushResult>(_writer, _flushCore.Version) : new ValueTask<FlushResult>(result);
    }

    private void CompleteWriter(Exception? exception)
    {
        bool wakeReader;
        ReadResult readResult;
        Exception? readError;
        Enter();
        try
        {
            if (_writerCompleted)
            {
                return;
            }

            CommitUnsynchronized();
            _writerCompleted = true;
            _writerError = exception;
            _readerSignaled = true;
            wakeReader = TakeWaitingReader(out readResult, out readError);
            if (_readerCompleted)
            {
                ReleaseSegments();
            }
        }
        finally
        {
            Exit();
        }

        if (wakeReader)
        {
            CompleteRead(readResult, readError);
        }
    }

    private void CancelPendingFlush()
    {
        bool wake;
        bool completed;
        Enter();
        try
        {
            wake = _flushWaiting;
            completed = _readerCompleted;
            if (wake)
            {
                _flushWaiting = false;
                _cancelFlush = false;
            }
            else
            {
                _cancelFlush = true;
            }
        }
        finally
        {
            Exit();
        }

        if (wake)
        {
            CompleteFlush(new FlushResult(isCanceled: true, isCompleted: completed), null);
        }
    }

    private bool TakeFlushCancel()
    {
        var canceled = _cancelFlush;
        _cancelFlush = false;
        return canceled;
    }

    private void CancelFlushFromToken(CancellationToken token)
    {
        if (TakeWaiting(ref _flushWaiting))
        {
            CompleteFlush(default, new OperationCanceledException(token));
        }
    }

    /// <summary>Takes a waiting operation (under the lock): true if one was waiting, which the caller then completes.</summary>
    private bool TakeWaiting(ref bool waiting)
    {
        Enter();
        try
        {
            var was = waiting;
            waiting = false;
            return was;
        }
        finally
        {
            Exit();
        }
    }

    /// <summary>Returns every committed segment but the writer's, after the reader completed (under the lock).</summary>
    private void DiscardUnsynchronized()
    {
        var tail = _tail;
        if (tail is null)
        {
            return;
        }

        while (_head is not null && _head != tail)
        {
            var next = _head.NextSegment;
            ReturnSegment(_head);
            _head = next;
        }

        _head = _commit = tail;
        _headIndex = _commitIndex = tail.Written;
        _unconsumed = 0;
        _lastExamined = tail.RunningIndex + tail.Written;
    }

    /// <summary>Makes the written bytes visible to the reader (under the lock).</summary>
    private void CommitUnsynchronized()
    {
        _writerActive = false;
        var tail = _tail;
        if (tail is null)
        {
            return;
        }

        for (var segment = _commit; segment is not null; segment = segment.NextSegment)
        {
            segment.ShowWritten();
            if (segment == tail)
            {
                break;
            }
        }

        _commit = tail;
        _commitIndex = tail.Written;
        var before = _unconsumed;
        _unconsumed += _unflushed;
        _unflushed = 0;

        // The writer pauses when this commit crosses the threshold; it stays paused until the reader examines enough.
        if (_pauseThreshold > 0 && before < _pauseThreshold && _unconsumed >= _pauseThreshold && !_readerCompleted)
        {
            _writerPaused = true;
        }
    }

    // ---- reader ----

    private ValueTask<ReadResult> ReadAsync(CancellationToken cancellationToken)
    {
        if (cancellationToken.IsCancellationRequested)
        {
            return ValueTask.FromCanceled<ReadResult>(cancellationToken);
        }

        Enter();
        try
        {
            ThrowIfReaderUnusable();
            if (_readerSignaled || _cancelRead)
            {
                return new ValueTask<ReadResult>(ResultUnsynchronized());
            }

            _readWaiting = true;
            _readCore.Reset();
            if (cancellationToken.CanBeCanceled)
            {
                _readRegistration = cancellationToken.UnsafeRegister(static (s, token) => ((InlinePipe)s!).CancelReadFromToken(token), this);
            }
        }
        finally
        {
            Exit();
        }

        return new ValueTask<ReadResult>(_reader, _readCore.Version);
    }

    private bool TryRead(out ReadResult result)
    {
        Enter();
        try
        {
            ThrowIfReaderUnusable();
            if (_readerSignaled || _cancelRead || _unconsumed > 0)
            {
                result = ResultUnsynchronized();
                return true;
            }
        }
        finally
        {
            Exit();
        }

        result = default;
        return false;
    }

    private void ThrowIfReaderUnusable()
    {
        if (_readerCompleted)
        {
            throw new InvalidOperationException("Reading is not allowed after the reader was completed.");
        }

        if (_readWaiting)
        {
            throw new InvalidOperationException("A read is already pending.");
        }
    }

    /// <summary>What a read returns now (under the lock); throws the writer's exception if it failed.</summary>
    private ReadResult ResultUnsynchronized()
    {
        if (_writerError is { } error)
        {
            ExceptionDispatchInfo.Throw(error);
        }

        var canceled = _cancelRead;
        _cancelRead = false;
        var buffer = _head is null ? default : new ReadOnlySequence<byte>(_head, _headIndex, _commit!, _commitIndex);
        return new ReadResult(buffer, canceled, _writerCompleted);
    }

    /// <summary>Under the lock: if a read waits, takes it (its result or error), to be completed outside the lock.</summary>
    private bool TakeWaitingReader(out ReadResult result, out Exception? error)
    {
        result = default;
        error = null;
        if (!_readWaiting)
        {
            return false;
        }

        _readWaiting = false;
        try
        {
            result = ResultUnsynchronized();
        }
        catch (Exception e)
        {
            error = e;
        }

        return true;
    }

    private void CompleteRead(ReadResult result, Exception? error) => Complete(ref _readCore, ref _readRegistration, result, error);

    private void CompleteFlush(FlushResult result, Exception? error) => Complete(ref _flushCore, ref _flushRegistration, result, error);

    /// <summary>Completes a taken waiter outside the lock: its continuation runs here, inline.</summary>
    private static void Complete<T>(ref ManualResetValueTaskSourceCore<T> core, ref CancellationTokenRegistration registration, T result, Exception? error)
    {
        registration.Unregister();
        registration = default;
        if (error is not null)
        {
            core.SetException(error);
        }
        else
        {
            core.SetResult(result);
        }
    }

    private void AdvanceTo(SequencePosition consumed, SequencePosition examined)
    {
        var resumeWriter = false;
        var resumeCanceled = false;
        Enter();
        try
        {
            if (_readerCompleted)
            {
                throw new InvalidOperationException("Reading is not allowed after the reader was completed.");
            }

            if (_head is not null && consumed.GetObject() is Segment consumedSegment)
            {
                var consumedIndex = consumed.GetInteger();
                if (!Contains(consumedSegment, consumedIndex))
                {
                    throw new InvalidOperationException("The consumed position is not in the unconsumed part of this pipe.");
                }

                while (_head != consumedSegment)
                {
                    var next = _head.NextSegment!;
                    ReturnSegment(_head);
                    _head = next;
                }

                _headIndex = consumedIndex;

                // A segment read to its end that the writer has left is returned too (the tail is kept for the next message).
                while (_head != _tail && _headIndex == _head.Written)
                {
                    var next = _head.NextSegment!;
                    if (_commit == _head)
                    {
                        _commit = next;
                        _commitIndex = 0;
                    }

                    ReturnSegment(_head);
                    _head = next;
                    _headIndex = 0;
                }
            }

            // Everything examined: the next read waits for more (unless the writer is done).
            if (!_writerCompleted && ExaminedEverything(examined))
            {
                _readerSignaled = false;
            }

            // Back-pressure counts the bytes not yet examined (as Pipe); the writer resumes when they drop below the mark.
            if (examined.GetObject() is Segment examinedSegment && _lastExamined >= 0)
            {
                var examinedAt = examinedSegment.RunningIndex + examined.GetInteger();
                var before = _unconsumed;
                _unconsumed -= Math.Max(0, examinedAt - _lastExamined);
                _lastExamined = Math.Max(_lastExamined, examinedAt);
                if (before >= _resumeThreshold && _unconsumed < _resumeThreshold)
                {
                    _writerPaused = false;
                    if (_flushWaiting)
                    {
                        _flushWaiting = false;
                        resumeWriter = true;
                        resumeCanceled = TakeFlushCancel();
                    }
                }
            }

            // Everything read and the writer not writing: an idle pipe gives its last segment back too (as Pipe).
            if (!_keepSegment && !_writerActive && _head is not null && _head == _tail && _headIndex == _head.Written)
            {
                ReturnSegment(_head);
                _head = _commit = _tail = null;
                _headIndex = _commitIndex = 0;
            }
        }
        finally
        {
            Exit();
        }

        if (resumeWriter)
        {
            CompleteFlush(new FlushResult(isCanceled: resumeCanceled, isCompleted: false), null);
        }
    }

    private bool ExaminedEverything(SequencePosition examined)
    {
        if (examined.GetObject() is not Segment segment)
        {
            // A position of an empty result from before anything was written: everything, if still nothing was.
            return _commit is null;
        }

        if (_commit is null)
        {
            return true;
        }

        return segment.RunningIndex + examined.GetInteger() >= _commit.RunningIndex + _commitIndex;
    }

    private bool Contains(Segment segment, int index)
    {
        for (var s = _head; s is not null; s = s.NextSegment)
        {
            if (s == segment)
            {
                var start = s == _head ? _headIndex : 0;
                var end = s == _commit ? _commitIndex : s.Written;
                return index >= start && index <= end;
            }

            if (s == _commit)
            {
                break;
            }
        }

        return false;
    }

    private void CancelPendingRead()
    {
        bool wake;
        ReadResult result;
        Exception? error;
        Enter();
        try
        {
            _cancelRead = true;
            wake = TakeWaitingReader(out result, out error);
        }
        finally
        {
            Exit();
        }

        if (wake)
        {
            CompleteRead(result, error);
        }
    }

    private void CancelReadFromToken(CancellationToken token)
    {
        if (TakeWaiting(ref _readWaiting))
        {
            CompleteRead(default, new OperationCanceledException(token));
        }
    }

    private void CompleteReader(Exception? exception)
    {
        bool wakeWriter;
        var wakeCanceled = false;
        Enter();
        try
        {
            if (_readerCompleted)
            {
                return;
            }

            _readerCompleted = true;
            _readerError = exception;
            wakeWriter = _flushWaiting;
            _flushWaiting = false;
            _writerPaused = false;
            wakeCanceled = wakeWriter && TakeFlushCancel();
            if (_writerCompleted)
            {
                ReleaseSegments();
            }
        }
        finally
        {
            Exit();
        }

        if (wakeWriter)
        {
            CompleteFlush(new FlushResult(isCanceled: wakeCanceled, isCompleted: true), exception);
        }
    }

    // ---- segments ----

    private Segment RentSegment(int need)
    {
        var segment = _spare ?? new Segment();
        _spare = segment.NextSpare;
        segment.NextSpare = null;
        var size = Math.Max(need, _segmentSize);
        if (_pool is not null && size <= _pool.MaxBufferSize)
        {
            segment.SetMemory(_pool.Rent(size));
        }
        else
        {
            segment.SetArray(ArrayPool<byte>.Shared.Rent(size));
        }

        return segment;
    }

    private void ReturnSegment(Segment segment)
    {
        segment.ReturnMemory();
        segment.NextSpare = _spare;
        _spare = segment;
    }

    private void ReleaseSegments()
    {
        for (var segment = _head; segment is not null;)
        {
            var next = segment.NextSegment;
            ReturnSegment(segment);
            segment = next;
        }

        _head = _commit = _tail = null;
        _headIndex = _commitIndex = 0;
        _unconsumed = 0;
        _lastExamined = -1;
    }

    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        private IMemoryOwner<byte>? _owner;
        private byte[]? _array;

        public Memory<byte> Available;
        public int Written;
        public Segment? NextSpare;

        public int Capacity => Available.Length;

        public Segment? NextSegment => (Segment?)Next;

        public void SetMemory(IMemoryOwner<byte> owner)
        {
            _owner = owner;
            Available = owner.Memory;
        }

        public void SetArray(byte[] array)
        {
            _array = array;
            Available = array;
        }

        public void Reset(long runningIndex)
        {
            RunningIndex = runningIndex;
            Written = 0;
            Memory = default;
            Next = null;
        }

        public void SetNext(Segment next) => Next = next;

        public void ShowWritten() => Memory = Available[..Written];

        public void ReturnMemory()
        {
            _owner?.Dispose();
            if (_array is not null)
            {
                ArrayPool<byte>.Shared.Return(_array);
            }

            _owner = null;
            _array = null;
            Available = default;
            Memory = default;
            Next = null;
            Written = 0;
        }
    }

    private sealed class InlinePipeReader(InlinePipe pipe) : PipeReader, IValueTaskSource<ReadResult>
    {
        public override ValueTask<ReadResult> ReadAsync(CancellationToken cancellationToken = default) => pipe.ReadAsync(cancellationToken);

        public override bool TryRead(out ReadResult result) => pipe.TryRead(out result);

        public override void AdvanceTo(SequencePosition consumed) => pipe.AdvanceTo(consumed, consumed);

        public override void AdvanceTo(SequencePosition consumed, SequencePosition examined) => pipe.AdvanceTo(consumed, examined);

        public override void CancelPendingRead() => pipe.CancelPendingRead();

        public override void Complete(Exception? exception = null) => pipe.CompleteReader(exception);

        public ReadResult GetResult(short token) => pipe._readCore.GetResult(token);

        public ValueTaskSourceStatus GetStatus(short token) => pipe._readCore.GetStatus(token);

        // No scheduling context (as Pipe with useSynchronizationContext: false): continuations run inline.
        public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
            pipe._readCore.OnCompleted(continuation, state, token, flags & ~ValueTaskSourceOnCompletedFlags.UseSchedulingContext);
    }

    private sealed class InlinePipeWriter(InlinePipe pipe) : PipeWriter, IValueTaskSource<FlushResult>
    {
        public override bool CanGetUnflushedBytes => true;

        public override long UnflushedBytes => pipe._unflushed;

        public override Memory<byte> GetMemory(int sizeHint = 0) => pipe.GetMemory(sizeHint);

        public override Span<byte> GetSpan(int sizeHint = 0) => pipe.GetMemory(sizeHint).Span;

        public override void Advance(int bytes) => pipe.Advance(bytes);

        public override ValueTask<FlushResult> FlushAsync(CancellationToken cancellationToken = default) => pipe.FlushAsync(cancellationToken);

        public override void CancelPendingFlush() => pipe.CancelPendingFlush();

        public override void Complete(Exception? exception = null) => pipe.CompleteWriter(exception);

        public FlushResult GetResult(short token) => pipe._flushCore.GetResult(token);

        public ValueTaskSourceStatus GetStatus(short token) => pipe._flushCore.GetStatus(token);

        public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
            pipe._flushCore.OnCompleted(continuation, state, token, flags & ~ValueTaskSourceOnCompletedFlags.UseSchedulingContext);
    }
}
