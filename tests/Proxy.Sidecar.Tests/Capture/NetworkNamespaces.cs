using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using System.Threading.Channels;

namespace Proxy.Sidecar.Tests.Capture;

/// <summary>
/// Two network namespaces joined by a veth pair, created for one test and always removed:
/// <code>
///  pxt-PID-N-a ("app", where rules are applied)        pxt-PID-N-p ("peer")
///  lo up                                               lo up
///  veth0 192.0.2.1/24, 2001:db8::1/64  &lt;--veth--&gt;     veth1 192.0.2.2/24, 2001:db8::2/64
/// </code>
/// Addresses come from the documentation ranges and exist only inside these namespaces. Names carry the
/// creating process id, so a later run removes namespaces left behind by a crashed one (and only those).
/// Needs root; without it the constructor fails with a sentence saying so, so the tests fail, not skip.
/// </summary>
public sealed class NamespacePair : IDisposable
{
    public const string Prefix = "pxt-";

    public static readonly IPAddress AppV4 = IPAddress.Parse("192.0.2.1");
    public static readonly IPAddress PeerV4 = IPAddress.Parse("192.0.2.2");
    public static readonly IPAddress AppV6 = IPAddress.Parse("2001:db8::1");
    public static readonly IPAddress PeerV6 = IPAddress.Parse("2001:db8::2");

    private static int _counter;
    private static int _staleRemoved;

    private NamespacePair(NetworkNamespace app, NetworkNamespace peer)
    {
        App = app;
        Peer = peer;
    }

    public NetworkNamespace App { get; }
    public NetworkNamespace Peer { get; }

    public static NamespacePair Create()
    {
        Prerequisites.Check();
        if (Interlocked.Exchange(ref _staleRemoved, 1) == 0)
        {
            RemoveStale();
        }

        var id = $"{Prefix}{Environment.ProcessId.ToString(CultureInfo.InvariantCulture)}-{Interlocked.Increment(ref _counter).ToString(CultureInfo.InvariantCulture)}";
        var app = new NetworkNamespace(id + "-a");
        var peer = new NetworkNamespace(id + "-p");
        var created = new List<NetworkNamespace>(2);
        try
        {
            foreach (var ns in new[] { app, peer })
            {
                Host.Run("ip", "netns", "add", ns.Name);
                created.Add(ns);
                Host.Run("ip", "-n", ns.Name, "link", "set", "lo", "up");
            }

            Host.Run("ip", "link", "add", "name", "veth0", "netns", app.Name, "type", "veth", "peer", "name", "veth1", "netns", peer.Name);
            Configure(app, "veth0", AppV4, AppV6);
            Configure(peer, "veth1", PeerV4, PeerV6);
            return new NamespacePair(app, peer);
        }
        catch
        {
            foreach (var ns in created)
            {
                Host.TryRun("ip", "netns", "del", ns.Name);
            }

            throw;
        }
    }

    private static void Configure(NetworkNamespace ns, string device, IPAddress v4, IPAddress v6)
    {
        Host.Run("ip", "netns", "exec", ns.Name, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=0");
        Host.Run("ip", "-n", ns.Name, "addr", "add", $"{v4}/24", "dev", device);
        Host.Run("ip", "-n", ns.Name, "addr", "add", $"{v6}/64", "dev", device, "nodad");
        Host.Run("ip", "-n", ns.Name, "link", "set", device, "up");
    }

    /// <summary>Deletes pxt-* namespaces whose creating process is gone.</summary>
    private static void RemoveStale()
    {
        var result = Host.Run("ip", "netns", "list");
        foreach (var line in result.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var name = line.Split(' ')[0];
            if (!name.StartsWith(Prefix, StringComparison.Ordinal))
            {
                continue;
            }

            var pidText = name[Prefix.Length..].Split('-')[0];
            var alive = int.TryParse(pidText, NumberStyles.None, CultureInfo.InvariantCulture, out var pid) && Directory.Exists($"/proc/{pid}");
            if (!alive)
            {
                Host.TryRun("ip", "netns", "del", name);
            }
        }
    }

    public void Dispose()
    {
        // Deleting a namespace also deletes its end of the veth pair, and so the pair.
        var errors = new StringBuilder();
        foreach (var ns in new[] { App, Peer })
        {
            if (!Host.TryRun("ip", ["netns", "del", ns.Name], out var error))
            {
                errors.Append(error).Append('\n');
            }
        }

        if (errors.Length > 0)
        {
            throw new InvalidOperationException($"Removing the test network namespaces failed: {errors}");
        }
    }
}

/// <summary>One named network namespace (under /var/run/netns).</summary>
public sealed partial class NetworkNamespace
{
    private const int CloneNewNet = 0x40000000;

    public NetworkNamespace(string name) => Name = name;

    public string Name { get; }

    /// <summary>
    /// Creates a TCP socket that lives in this namespace. A socket belongs to the namespace of the thread
    /// that created it, for its whole life; so a dedicated thread enters the namespace (setns), creates the
    /// socket and ends. The socket is then used from any thread.
    /// </summary>
    /// <remarks>
    /// With <paramref name="ownerUid"/>, the thread also sets its filesystem uid (setfsuid, per thread) before
    /// creating the socket, so the kernel records that uid as the socket's owner, the one iptables'
    /// <c>-m owner --uid-owner</c> matches: a socket "of the proxy" without starting another process.
    /// </remarks>
    public Socket CreateSocket(AddressFamily family, int? ownerUid = null)
    {
        Socket? socket = null;
        Exception? failure = null;
        var thread = new Thread(() =>
        {
            try
            {
                using var handle = File.OpenHandle($"/var/run/netns/{Name}");
                if (SetNs(handle.DangerousGetHandle().ToInt32(), CloneNewNet) != 0)
                {
                    throw new InvalidOperationException($"setns into {Name} failed: errno {Marshal.GetLastPInvokeError()}");
                }

                if (ownerUid is { } uid)
                {
                    _ = SetFsUid(uid);
                    if (SetFsUid(uid) != uid)
                    {
                        throw new InvalidOperationException($"setfsuid({uid}) did not take effect");
                    }
                }

                socket = new Socket(family, SocketType.Stream, ProtocolType.Tcp);
            }
            catch (Exception ex)
            {
                failure = ex;
            }
        });
        thread.Start();
        if (!thread.Join(TimeSpan.FromSeconds(10)))
        {
            throw new TimeoutException($"creating a socket in {Name} did not finish");
        }

        return failure is null ? socket! : throw new InvalidOperationException($"Cannot create a socket in network namespace {Name}.", failure);
    }

    /// <summary>A listening socket in this namespace on <paramref name="endPoint"/> (port 0: any free port).</summary>
    public Socket Listen(IPEndPoint endPoint, bool dualMode = false)
    {
        var socket = CreateSocket(endPoint.AddressFamily);
        if (dualMode)
        {
            socket.DualMode = true;
        }

        socket.Bind(endPoint);
        socket.Listen(16);
        return socket;
    }

    /// <summary>Runs a program inside this namespace and waits for it; throws with its output if it fails.</summary>
    public string Exec(params string[] command) => Host.Run("ip", ["netns", "exec", Name, .. command]);

    /// <summary>Runs a program inside this namespace; returns its exit code and output.</summary>
    public (int ExitCode, string Output, string Error) TryExec(params string[] command) => Host.RunRaw("ip", ["netns", "exec", Name, .. command]);

    /// <summary>Starts a long-running program in this namespace, optionally as another uid and/or gid (setpriv).</summary>
    public BackgroundProcess Start(int? uid, int? gid, params string[] command)
    {
        var prefix = new List<string> { "netns", "exec", Name };
        if (uid is not null || gid is not null)
        {
            prefix.Add("setpriv");
            if (uid is { } u)
            {
                prefix.Add($"--reuid={u}");
            }

            if (gid is { } g)
            {
                prefix.Add($"--regid={g}");
            }

            prefix.Add("--clear-groups");
        }

        return BackgroundProcess.Start("ip", [.. prefix, .. command]);
    }

    [LibraryImport("libc", EntryPoint = "setns", SetLastError = true)]
    private static partial int SetNs(int fd, int nsType);

    // Returns the previous fsuid; calling it twice with the same value confirms the change.
    [LibraryImport("libc", EntryPoint = "setfsuid")]
    private static partial int SetFsUid(int fsuid);
}

/// <summary>A process whose stdout lines are collected and can be awaited.</summary>
public sealed class BackgroundProcess : IDisposable
{
    private readonly Process _process;
    private readonly Channel<string> _lines = Channel.CreateUnbounded<string>();
    private readonly List<string> _seen = [];
    private readonly StringBuilder _stderr = new();

    private BackgroundProcess(Process process) => _process = process;

    public static BackgroundProcess Start(string fileName, string[] arguments)
    {
        var startInfo = new ProcessStartInfo(fileName)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var argument in arguments)
        {
            startInfo.ArgumentList.Add(argument);
        }

        startInfo.Environment["DOTNET_EnableDiagnostics"] = "0";
        startInfo.Environment["DOTNET_NOLOGO"] = "1";
        var process = new Process { StartInfo = startInfo };
        var background = new BackgroundProcess(process);
        process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is null)
            {
                background._lines.Writer.TryComplete();
            }
            else
            {
                background._lines.Writer.TryWrite(e.Data);
            }
        };
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is not null)
            {
                lock (background._stderr)
                {
                    background._stderr.Append(e.Data).Append('\n');
                }
            }
        };
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return background;
    }

    /// <summary>Every stdout line read so far by <see cref="WaitForLineAsync"/>, plus any already buffered.</summary>
    public IReadOnlyList<string> Lines
    {
        get
        {
            while (_lines.Reader.TryRead(out var line))
            {
                _seen.Add(line);
            }

            return _seen;
        }
    }

    public string StandardError
    {
        get
        {
            lock (_stderr)
            {
                return _stderr.ToString();
            }
        }
    }

    /// <summary>Waits for a stdout line matching <paramref name="predicate"/> (looking at earlier lines too).</summary>
    public async Task<string> WaitForLineAsync(Func<string, bool> predicate, TimeSpan timeout)
    {
        foreach (var line in Lines)
        {
            if (predicate(line))
            {
                return line;
            }
        }

        using var cts = new CancellationTokenSource(timeout);
        try
        {
            while (await _lines.Reader.WaitToReadAsync(cts.Token).AsTask().WaitAsync(timeout))
            {
                while (_lines.Reader.TryRead(out var line))
                {
                    _seen.Add(line);
                    if (predicate(line))
                    {
                        return line;
                    }
                }
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or TimeoutException)
        {
            throw new TimeoutException($"No matching line within {timeout}. stdout so far:\n{string.Join('\n', _seen)}\nstderr:\n{StandardError}");
        }

        throw new InvalidOperationException($"The process ended (exit {(_process.HasExited ? _process.ExitCode : -1)}) without a matching line. stdout:\n{string.Join('\n', _seen)}\nstderr:\n{StandardError}");
    }

    public void Dispose()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.StandardInput.Close();
                if (!_process.WaitForExit(TimeSpan.FromSeconds(5)))
                {
                    _process.Kill(entireProcessTree: true);
                    _process.WaitForExit(TimeSpan.FromSeconds(5));
                }
            }
        }
        catch (Exception ex) when (ex is InvalidOperationException or IOException)
        {
            // Already gone.
        }

        _process.Dispose();
    }
}

/// <summary>Runs host commands synchronously, with a timeout, failing with their output.</summary>
public static class Host
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    public static string Run(string fileName, params string[] arguments)
    {
        var (exitCode, output, error) = RunRaw(fileName, arguments);
        if (exitCode != 0)
        {
            throw new InvalidOperationException($"'{fileName} {string.Join(' ', arguments)}' exited with {exitCode}: {error.Trim()} {output.Trim()}");
        }

        return output;
    }

    public static void TryRun(string fileName, params string[] arguments) => TryRun(fileName, arguments, out _);

    public static bool TryRun(string fileName, string[] arguments, out string error)
    {
        var result = RunRaw(fileName, arguments);
        error = result.ExitCode == 0 ? "" : $"'{fileName} {string.Join(' ', arguments)}' exited with {result.ExitCode}: {result.Error.Trim()}";
        return result.ExitCode == 0;
    }

    public static (int ExitCode, string Output, string Error) RunRaw(string fileName, string[] arguments)
    {
        var startInfo = new ProcessStartInfo(fileName)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        foreach (var argument in arguments)
        {
            startInfo.ArgumentList.Add(argument);
        }

        startInfo.Environment["DOTNET_EnableDiagnostics"] = "0";
        startInfo.Environment["DOTNET_NOLOGO"] = "1";
        using var process = Process.Start(startInfo) ?? throw new InvalidOperationException($"cannot start {fileName}");
        process.StandardInput.Close();
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(Timeout))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"'{fileName} {string.Join(' ', arguments)}' did not finish within {Timeout}");
        }

        return (process.ExitCode, output.GetAwaiter().GetResult(), error.GetAwaiter().GetResult());
    }
}

/// <summary>Fails (never skips) with a sentence when the machine cannot run the real-capture tests.</summary>
internal static partial class Prerequisites
{
    private static readonly (string Program, string Package)[] Tools =
    [
        ("ip", "iproute2"),
        ("setpriv", "util-linux"),
        ("iptables-nft-restore", "iptables"),
        ("iptables-legacy-restore", "iptables"),
        ("ip6tables-nft-restore", "iptables"),
        ("ip6tables-legacy-restore", "iptables"),
    ];

    public static void Check()
    {
        if (GetEuid() != 0)
        {
            throw new InvalidOperationException(
                "The real-capture tests create network namespaces and iptables rules and must run as root " +
                "(CI runs them as root). Run 'sudo dotnet test tests/Proxy.Sidecar.Tests', or filter them out " +
                "explicitly with --filter 'FullyQualifiedName!~RealCapture'.");
        }

        var missing = Missing();
        if (missing.Count > 0)
        {
            // A fresh machine has only the .NET SDK: as root, install the tools once (what .ci/run does).
            lock (InstallLock)
            {
                s_installOutput ??= Install(missing.Select(static m => m.Package).Distinct().ToArray());
            }

            missing = Missing();
        }

        if (missing.Count > 0)
        {
            throw new InvalidOperationException(
                $"The real-capture tests need programs that are not installed: {string.Join(", ", missing.Select(static m => $"{m.Program} (apt-get install {m.Package})"))}. " +
                $"Installing them failed: {s_installOutput}");
        }
    }

    private static readonly Lock InstallLock = new();
    private static string? s_installOutput;

    private static List<(string Program, string Package)> Missing()
    {
        var runner = new Proxy.Sidecar.Iptables.ProcessCommandRunner();
        return Tools.Where(t => runner.Locate(t.Program) is null).ToList();
    }

    private static string Install(string[] packages)
    {
        var output = new System.Text.StringBuilder();
        string[][] steps = [["update", "-q"], ["install", "-y", "-q", .. packages]];
        foreach (var args in steps)
        {
            var start = new System.Diagnostics.ProcessStartInfo("apt-get") { RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (var a in args)
            {
                start.ArgumentList.Add(a);
            }

            start.Environment["DEBIAN_FRONTEND"] = "noninteractive";
            using var process = System.Diagnostics.Process.Start(start)!;
            var stdout = process.StandardOutput.ReadToEndAsync();
            var stderr = process.StandardError.ReadToEndAsync();
            if (!process.WaitForExit(TimeSpan.FromMinutes(5)))
            {
                process.Kill(entireProcessTree: true);
                return output.Append($"apt-get {args[0]} did not finish within 5 minutes").ToString();
            }

            output.Append($"apt-get {string.Join(' ', args)} exited {process.ExitCode}: {stderr.Result.Trim()} ");
            if (process.ExitCode != 0)
            {
                break;
            }
        }

        return output.ToString();
    }

    [LibraryImport("libc", EntryPoint = "geteuid")]
    private static partial uint GetEuid();
}
