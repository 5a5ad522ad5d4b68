using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text;

namespace Proxy.Bench.E2e.Infrastructure;

/// <summary>
/// A process the harness started. Output is kept (whole, or the last lines only) for results and error
/// messages. Every instance is registered in <see cref="ChildProcessRegistry"/> until it has exited, so an
/// interrupted run (Ctrl-C, SIGTERM, exception) still kills it.
/// </summary>
internal sealed class ChildProcess : IAsyncDisposable
{
    private const int TailLines = 40;

    private readonly Process _process;
    private readonly bool _keepAllOutput;
    private readonly StringBuilder _stdout = new();
    private readonly Queue<string> _tail = new();
    private readonly Lock _gate = new();
    private readonly TaskCompletionSource _exited = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly List<(string Marker, TaskCompletionSource Seen)> _markers = [];

    private ChildProcess(string name, Process process, bool keepAllOutput)
    {
        Name = name;
        _process = process;
        _keepAllOutput = keepAllOutput;
    }

    public string Name { get; }

    public int Id { get; private set; }

    /// <summary><see cref="Stopwatch.GetTimestamp"/> taken just before the process was created.</summary>
    public long StartTimestamp { get; private set; }

    public bool HasExited => _exited.Task.IsCompleted;

    public Task Exited => _exited.Task;

    public int ExitCode => _process.ExitCode;

    /// <summary>Starts <paramref name="fileName"/> with arguments passed one by one (no shell quoting involved).</summary>
    public static ChildProcess Start(
        string name,
        string fileName,
        IEnumerable<string> arguments,
        bool keepAllOutput = false,
        IReadOnlyDictionary<string, string>? environment = null,
        string? workingDirectory = null)
    {
        var startInfo = new ProcessStartInfo(fileName)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
            WorkingDirectory = workingDirectory ?? Environment.CurrentDirectory,
        };
        foreach (var argument in arguments)
        {
            startInfo.ArgumentList.Add(argument);
        }

        if (environment is not null)
        {
            foreach (var (key, value) in environment)
            {
                startInfo.Environment[key] = value;
            }
        }

        var process = new Process { StartInfo = startInfo, EnableRaisingEvents = true };
        var child = new ChildProcess(name, process, keepAllOutput);
        process.OutputDataReceived += (_, e) => child.OnLine(e.Data, isStdout: true);
        process.ErrorDataReceived += (_, e) => child.OnLine(e.Data, isStdout: false);
        process.Exited += (_, _) => child.OnExited();

        child.StartTimestamp = Stopwatch.GetTimestamp();
        try
        {
            process.Start();
        }
        catch (System.ComponentModel.Win32Exception ex)
        {
            process.Dispose();
            throw new E2eException($"cannot start {name} ({fileName}): {ex.Message}", ex);
        }

        child.Id = process.Id;
        ChildProcessRegistry.Add(child);
        process.StandardInput.Close();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return child;
    }

    /// <summary>Completes when a line containing <paramref name="marker"/> has been printed (stdout or stderr).</summary>
    public Task WaitForOutputAsync(string marker)
    {
        var seen = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_gate)
        {
            foreach (var line in _tail)
            {
                if (line.Contains(marker, StringComparison.Ordinal))
                {
                    return Task.CompletedTask;
                }
            }

            _markers.Add((marker, seen));
        }

        return seen.Task;
    }

    public string StandardOutput
    {
        get
        {
            lock (_gate)
            {
                return _stdout.ToString();
            }
        }
    }

    /// <summary>The last lines of stdout and stderr, for error messages.</summary>
    public string RecentOutput
    {
        get
        {
            lock (_gate)
            {
                return _tail.Count == 0 ? "(no output)" : string.Join('\n', _tail);
            }
        }
    }

    public async Task WaitForExitAsync(CancellationToken cancellationToken)
    {
        await _exited.Task.WaitAsync(cancellationToken);

        // The Exited event can fire before the redirected streams are drained.
        await _process.WaitForExitAsync(cancellationToken);
    }

    /// <summary>
    /// "NAME exited (code N); last output: ..." once the process has exited, after its output is drained
    /// (the exit can be seen before the last lines are read).
    /// </summary>
    public async Task<string> DescribeExitAsync()
    {
        try
        {
            await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(2));
        }
        catch (TimeoutException)
        {
            // Describe what we have.
        }

        return $"{Name} exited (code {(HasExited ? ExitCode.ToString(System.Globalization.CultureInfo.InvariantCulture) : "?")}); last output:\n{RecentOutput}";
    }

    public void Kill()
    {
        if (HasExited)
        {
            return;
        }

        try
        {
            _process.Kill(entireProcessTree: true);
        }
        catch (InvalidOperationException)
        {
            // Already gone.
        }
        catch (System.ComponentModel.Win32Exception)
        {
            // Raced with its exit.
        }
    }

    /// <summary>Kills the process (if still running) and waits up to 5 s for it to be reaped.</summary>
    public async ValueTask DisposeAsync()
    {
        Kill();
        try
        {
            await _exited.Task.WaitAsync(TimeSpan.FromSeconds(5));
        }
        catch (TimeoutException)
        {
            Console.Error.WriteLine($"warning: {Name} (pid {Id}) did not exit within 5 s of SIGKILL");
        }

        ChildProcessRegistry.Remove(this);
        _process.Dispose();
    }

    private void OnLine(string? line, bool isStdout)
    {
        if (line is null)
        {
            return;
        }

        List<TaskCompletionSource>? toSignal = null;
        lock (_gate)
        {
            if (isStdout && _keepAllOutput)
            {
                _stdout.Append(line).Append('\n');
            }

            _tail.Enqueue(line);
            if (_tail.Count > TailLines)
            {
                _tail.Dequeue();
            }

            for (var i = _markers.Count - 1; i >= 0; i--)
            {
                if (line.Contains(_markers[i].Marker, StringComparison.Ordinal))
                {
                    (toSignal ??= []).Add(_markers[i].Seen);
                    _markers.RemoveAt(i);
                }
            }
        }

        if (toSignal is not null)
        {
            foreach (var seen in toSignal)
            {
                seen.TrySetResult();
            }
        }
    }

    private void OnExited()
    {
        ChildProcessRegistry.Remove(this);
        _exited.TrySetResult();
    }
}

/// <summary>Every child still running; <see cref="KillAll"/> runs on exit, Ctrl-C and SIGTERM.</summary>
internal static class ChildProcessRegistry
{
    private static readonly ConcurrentDictionary<ChildProcess, byte> Live = new();

    public static void Add(ChildProcess child) => Live.TryAdd(child, 0);

    public static void Remove(ChildProcess child) => Live.TryRemove(child, out _);

    public static void KillAll()
    {
        foreach (var child in Live.Keys)
        {
            child.Kill();
        }
    }
}
