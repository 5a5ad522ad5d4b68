using System.CommandLine;
using Proxy.Core.Configuration;
using Proxy.Sidecar.App;

namespace Proxy.Sidecar.Cli;

/// <summary>The run flags (one per <see cref="Setting"/> plus --config) and the action that starts the sidecar.</summary>
internal static class RunCommand
{
    public static void Configure(Command command, TextWriter stdout, TextWriter stderr)
    {
        var configFile = new Option<FileInfo?>("--config")
        {
            Description = "JSON config file (listeners, services and any setting below by its file key). Flags override it. Watched: a change (or POST /reload) applies services, routes and policies live.",
            HelpName = "file",
        };
        command.Options.Add(configFile);
        var options = new List<(Setting Setting, Option<string> Option)>();
        foreach (var setting in Setting.All)
        {
            var captured = setting;
            var option = new Option<string>("--" + setting.Flag)
            {
                Description = $"{setting.Help} File key: {setting.Path}.",
                DefaultValueFactory = _ => captured.Default,
                HelpName = "value",
            };
            command.Options.Add(option);
            options.Add((setting, option));
        }

        command.SetAction(async (parse, cancellationToken) =>
        {
            var flags = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var (setting, option) in options)
            {
                var result = parse.GetResult(option);
                if (result is { Implicit: false })
                {
                    flags[setting.Flag] = parse.GetValue(option)!;
                }
            }

            string? json = null;
            var file = parse.GetValue(configFile);
            if (file is not null)
            {
                try
                {
                    json = await File.ReadAllTextAsync(file.FullName, cancellationToken);
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    await stderr.WriteLineAsync($"error: --config: cannot read {file.FullName}: {e.Message}");
                    return ExitCodes.Usage;
                }
            }

            var loaded = ConfigLoader.Load(flags, json);
            if (!loaded.Ok)
            {
                foreach (var error in loaded.Errors)
                {
                    await stderr.WriteLineAsync($"error: {error}");
                }

                await stderr.WriteLineAsync($"{loaded.Errors.Count} configuration error(s). Run 'sidecar --help' for usage.");
                return ExitCodes.Usage;
            }

            // With a config file, its authorization section is reloaded when the file changes (App/ConfigReloader).
            var source = file is null ? null : new App.ConfigSource(file.FullName, flags);
            return await SidecarApp.RunAsync(loaded.Config!, stdout, stderr, cancellationToken, source);
        });
    }
}
