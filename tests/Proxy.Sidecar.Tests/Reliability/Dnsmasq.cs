using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using DnsClient;

namespace Proxy.Sidecar.Tests.Reliability;

/// <summary>
/// A real DNS server for the discovery tests: dnsmasq on 127.0.0.1 and a free port, answering only for the records the
/// test gives it (no upstreams, no /etc/hosts), authoritative for <c>test</c> (<c>--local=/test/</c>: an unknown name
/// is NXDOMAIN, a name without AAAA records answers NOERROR with no records), with a 1 s TTL. The A records live in an
/// addn-hosts file the test rewrites (<see cref="SetHostsAsync"/>: written aside, renamed, SIGHUP, then read back until
/// dnsmasq answers with them); SRV records are command-line options (<see cref="RestartAsync"/> changes them).
/// </summary>
internal sealed class Dnsmasq : IAsyncDisposable
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(15);
    private readonly string _directory = Directory.CreateTempSubdirectory("pxt-dns-").FullName;
    private readonly string _program;
    private readonly StringBuilder _log = new();
    private string[] _extra;
    private Process? _process;

    private Dnsmasq(string program, int port, string[] extra)
    {
        _program = program;
        _extra = extra;
        EndPoint = new IPEndPoint(IPAddress.Loopback, port);
    }

    public IPEndPoint EndPoint { get; }

    private string HostsPath => Path.Combine(_directory, "hosts");

    /// <summary>
    /// The dnsmasq program. Missing: installed from Debian when running as root (what .ci/run does up front); still
    /// missing: skipped with a sentence outside CI, a failure in CI (the CI environment variable is set).
    /// </summary>
    public static string Require()
    {
        var program = Locate();
        if (program is null && Environment.UserName == "root")
        {
            lock (InstallLock)
            {
                program = Locate() ?? Install();
            }
        }

        if (program is null)
        {
            const string Message = "dnsmasq is not installed (apt-get install dnsmasq): the DNS discovery tests need a real DNS server";
            Skip.If(Environment.GetEnvironmentVariable("CI") is null, Message + "; skipped outside CI.");
            throw new InvalidOperationException(Message + ".");
        }

        return program;
    }

    /// <summary>Starts dnsmasq with <paramref name="hosts"/> ("ip name" lines) and extra options (e.g. <c>--srv-host=...</c>).</summary>
    public static async Task<Dnsmasq> StartAsync(string hosts, params string[] extra)
    {
        var program = Require();
        for (var attempt = 0; ; attempt++)
        {
            var server = new Dnsmasq(program, FreeUdpPort(), extra);
            await File.WriteAllTextAsync(server.HostsPath, hosts);
            try
            {
                await server.LaunchAsync();
                return server;
            }
            catch (InvalidOperationException) when (attempt < 3)
            {
                // The port was taken between our probe and dnsmasq's bind: another one.
                await server.DisposeAsync();
            }
        }
    }

    /// <summary>Replaces the A/AAAA records and waits until dnsmasq answers from the new file.</summary>
    public async Task SetHostsAsync(string hosts, string probeName, int expectedAnswers)
    {
        var temp = HostsPath + ".new";
        await File.WriteAllTextAsync(temp, hosts);
        File.Move(temp, HostsPath, overwrite: true);
        Signal("HUP");
        await WaitForAnswersAsync(probeName, QueryType.A, expectedAnswers);
    }

    /// <summary>Stops dnsmasq: the port answers nothing (queries time out).</summary>
    public async Task StopAsync()
    {
        if (_process is { } p)
        {
            _process = null;
            p.Kill();
            await p.WaitForExitAsync().WaitAsync(Timeout);
            p.Dispose();
        }
    }

    /// <summary>Starts dnsmasq again on the same port, with new extra options and hosts when given.</summary>
    public async Task RestartAsync(string? hosts = null, params string[] extra)
    {
        await StopAsync();
        if (hosts is not null)
        {
            await File.WriteAllTextAsync(HostsPath, hosts);
        }

        if (extra.Length > 0)
        {
            _extra = extra;
        }

        await LaunchAsync();
    }

    /// <summary>Queries dnsmasq (no cache) until <paramref name="name"/> has <paramref name="expected"/> answers of <paramref name="type"/> (0: NXDOMAIN counts).</summary>
    public async Task WaitForAnswersAsync(string name, QueryType type, int expected)
    {
        var client = new LookupClient(new LookupClientOptions(EndPoint) { UseCache = false, Timeout = TimeSpan.FromMilliseconds(500), Retries = 0, ThrowDnsErrors = false });
        var deadline = DateTime.UtcNow + Timeout;
        var last = "";
        while (DateTime.UtcNow < deadline)
        {
            try
            {
                var response = await client.QueryAsync(name, type).WaitAsync(Timeout);
                if ((!response.HasError && response.Answers.Count == expected)
                    || (expected == 0 && response.Header.ResponseCode == DnsHeaderResponseCode.NotExistentDomain))
                {
                    return;
                }

                last = response.HasError ? response.ErrorMessage : $"{response.Answers.Count} answers";
            }
            catch (DnsResponseException e)
            {
                last = e.Message;
            }

            await Task.Delay(50);
        }

        throw new TimeoutException($"dnsmasq did not answer {type} {name} with {expected} records within {Timeout} (last: {last}); its log:\n{Log}");
    }

    public string Log
    {
        get
        {
            lock (_log)
            {
                return _log.ToString();
            }
        }
    }

    private async Task LaunchAsync()
    {
        var start = new ProcessStartInfo(_program) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var arg in (string[])[
            "--keep-in-foreground", "--no-resolv", "--no-hosts", "--bind-interfaces", "--listen-address=127.0.0.1",
            $"--port={EndPoint.Port}", $"--addn-hosts={HostsPath}", "--local=/test/",
            "--local-ttl=1", "--no-negcache", "--cache-size=0", $"--user={Environment.UserName}", "--pid-file=", "--log-facility=-", "--log-queries"])
        {
            start.ArgumentList.Add(arg);
        }

        foreach (var arg in _extra)
        {
            start.ArgumentList.Add(arg);
        }

        var process = Process.Start(start) ?? throw new InvalidOperationException("dnsmasq did not start");
        process.OutputDataReceived += (_, e) => Append(e.Data);
        process.ErrorDataReceived += (_, e) => Append(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        _process = process;

        // Ready when it answers: a query for a name it cannot have (NXDOMAIN is an answer).
        var client = new LookupClient(new LookupClientOptions(EndPoint) { UseCache = false, Timeout = TimeSpan.FromMilliseconds(300), Retries = 0, ThrowDnsErrors = false });
        var deadline = DateTime.UtcNow + Timeout;
        while (DateTime.UtcNow < deadline)
        {
            if (process.HasExited)
            {
                throw new InvalidOperationException($"dnsmasq exited with {process.ExitCode}: {Log}");
            }

            try
            {
                var response = await client.QueryAsync("ready.probe.test", QueryType.A).WaitAsync(Timeout);
                if (response.Header.ResponseCode == DnsHeaderResponseCode.NotExistentDomain)
                {
                    return;
                }
            }
            catch (DnsResponseException)
            {
            }

            await Task.Delay(50);
        }

        throw new TimeoutException($"dnsmasq did not answer on {EndPoint} within {Timeout}: {Log}");
    }

    private void Append(string? line)
    {
        if (line is not null)
        {
            lock (_log)
            {
                _log.AppendLine(line);
            }
        }
    }

    private void Signal(string signal)
    {
        var pid = _process?.Id ?? throw new InvalidOperationException("dnsmasq is not running");
        using var kill = Process.Start("kill", [$"-{signal}", pid.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
        kill.WaitForExit(Timeout);
    }

    private static int FreeUdpPort()
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)socket.LocalEndPoint!).Port;
    }

    private static string? Locate()
    {
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Concat(["/usr/sbin", "/sbin"]))
        {
            var path = Path.Combine(dir, "dnsmasq");
            if (dir.Length > 0 && File.Exists(path))
            {
                return path;
            }
        }

        return null;
    }

    private static readonly Lock InstallLock = new();

    private static string? Install()
    {
        foreach (var args in (string[][])[["update", "-q"], ["install", "-y", "-q", "dnsmasq"]])
        {
            var start = new ProcessStartInfo("apt-get") { RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (var a in args)
            {
                start.ArgumentList.Add(a);
            }

            start.Environment["DEBIAN_FRONTEND"] = "noninteractive";
            using var process = Process.Start(start)!;
            _ = process.StandardOutput.ReadToEndAsync();
            _ = process.StandardError.ReadToEndAsync();
            if (!process.WaitForExit(TimeSpan.FromMinutes(5)) || process.ExitCode != 0)
            {
                return null;
            }
        }

        return Locate();
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync();
        try
        {
            Directory.Delete(_directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
