using System.Buffers;
using System.Text;
using Proxy.Http.Http2.Hpack;

namespace Proxy.Fuzz;

/// <summary>
/// HPACK decoder over a sequence of header blocks sharing one dynamic table. The payload is a list of blocks, each
/// prefixed with its length (2 bytes, big endian; a length past the end takes the rest). Contract checked: the only
/// failures are <see cref="HpackDecodingException"/> (decoding stops) and <see cref="HpackHeaderListTooLargeException"/>
/// (the block is refused, the table stays in step, decoding goes on); the fields, outcomes and table state are the same
/// whether each block comes whole or split into pieces (spans or a multi-segment sequence); the table's size is the sum
/// of its entries and never above its maximum; static indexes are 1..61.
/// <para>Control bits: 0..1 SETTINGS_HEADER_TABLE_SIZE (4096, 0, 256, 65536), 2 max header list 512, 3 max string 64,
/// 4 lower the table size to half after the first block, 5 pieces fed as one multi-segment sequence.</para>
/// </summary>
internal static class HpackTarget
{
    private static readonly int[] TableSizes = [4096, 0, 256, 65536];

    public static void Run(byte[] data)
    {
        var input = new FuzzInput(data);
        var blocks = Blocks(input.Payload);
        var whole = Decode(blocks, input, split: false);
        var pieces = Decode(blocks, input, split: true);
        ContractViolationException.Equal(whole, pieces, "fields with the blocks split into pieces");
    }

    private static List<ReadOnlyMemory<byte>> Blocks(ReadOnlyMemory<byte> payload)
    {
        var blocks = new List<ReadOnlyMemory<byte>>();
        while (payload.Length >= 2 && blocks.Count < 64)
        {
            var length = Math.Min((payload.Span[0] << 8) | payload.Span[1], payload.Length - 2);
            blocks.Add(payload.Slice(2, length));
            payload = payload[(2 + length)..];
        }

        return blocks;
    }

    private static string Decode(List<ReadOnlyMemory<byte>> blocks, FuzzInput input, bool split)
    {
        var tableSize = TableSizes[input.Control & 3];
        using var decoder = new HpackDecoder(tableSize, input.Bit(2) ? 512 : HpackDecoder.DefaultMaxHeaderListSize, input.Bit(3) ? 64 : HpackDecoder.DefaultMaxHeaderListSize);
        var log = new StringBuilder();
        var handler = new Handler(log, decoder);
        for (var b = 0; b < blocks.Count; b++)
        {
            if (b == 1 && input.Bit(4))
            {
                decoder.SetMaxHeaderTableSize(tableSize / 2);
            }

            log.Append("block ").Append(b).Append(':');
            var block = blocks[b];
            try
            {
                if (!split)
                {
                    decoder.Decode(block.Span, endHeaders: true, ref handler);
                }
                else
                {
                    var cuts = input.Cuts(block.Length);
                    if (input.Bit(5))
                    {
                        decoder.Decode(Sequences.Split(block, cuts), endHeaders: true, ref handler);
                    }
                    else
                    {
                        var start = 0;
                        foreach (var cut in cuts)
                        {
                            decoder.Decode(block.Span[start..cut], endHeaders: false, ref handler);
                            start = cut;
                        }

                        decoder.Decode(block.Span[start..], endHeaders: true, ref handler);
                    }
                }

                log.Append(" ok");
            }
            catch (HpackHeaderListTooLargeException e)
            {
                log.Append(" too large ").Append(e.Size);
            }
            catch (HpackDecodingException e)
            {
                log.Append(" error ").Append(e.Error);
                CheckTable(decoder.DynamicTable, log);
                return log.ToString();
            }

            CheckTable(decoder.DynamicTable, log);
        }

        return log.ToString();
    }

    private static void CheckTable(HpackDynamicTable table, StringBuilder log)
    {
        long size = 0;
        log.Append(" table");
        for (var i = 0; i < table.Count; i++)
        {
            size += table.Name(i).Length + table.Value(i).Length + HpackDynamicTable.EntryOverhead;
            log.Append(' ').Append(Convert.ToHexString(table.Name(i))).Append('=').Append(Convert.ToHexString(table.Value(i)));
        }

        ContractViolationException.Check(size == table.Size, $"table size {table.Size} but its entries add up to {size}");
        ContractViolationException.Check(table.Size <= table.MaxSize, $"table size {table.Size} above its maximum {table.MaxSize}");
        log.Append(" size ").Append(table.Size).Append('/').Append(table.MaxSize).Append('\n');
    }

    private readonly struct Handler(StringBuilder log, HpackDecoder decoder) : IHpackHeaderHandler
    {
        public void OnHeader(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value) =>
            log.Append(" [").Append(Convert.ToHexString(name)).Append(": ").Append(Convert.ToHexString(value)).Append(decoder.IsNeverIndexed ? " never]" : "]");

        public void OnStaticIndexedHeader(int index)
        {
            ContractViolationException.Check(HpackStaticTable.IsStatic(index), $"static index {index}");
            log.Append(" [#").Append(index).Append(']');
        }

        public void OnStaticIndexedHeader(int index, ReadOnlySpan<byte> value)
        {
            ContractViolationException.Check(HpackStaticTable.IsStatic(index), $"static index {index}");
            log.Append(" [#").Append(index).Append(": ").Append(Convert.ToHexString(value)).Append(decoder.IsNeverIndexed ? " never]" : "]");
        }
    }
}
