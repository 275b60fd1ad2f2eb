"""A Modbus TCP server for the interop test (test/interop/modbus.test.ts), built on pymodbus.

Written for Debian's python3-pymodbus 3.0.0 (3.0.0rc1 API): ModbusTcpServer with a
ModbusServerContext; later pymodbus releases renamed much of it.

Usage: pymodbus-server.py [PORT] [UNIT_ID]
Binds 127.0.0.1:PORT (0, the default, lets the kernel pick) and prints one line
`listening <port>` on stdout once it accepts connections. Runs until SIGTERM or SIGINT.

Every value is packed here with struct so the expected decoding is unambiguous: registers are
16-bit words as Modbus sends them, most significant byte first (Modbus application protocol
v1.1b3 section 4.2); "little word order" means the least significant register comes first.
The table is the contract of modbus.test.ts: change both together.
"""

import asyncio
import signal
import struct
import sys
import types

# pymodbus.server imports pyserial and pyserial-asyncio at module level for its serial server.
# Debian's python3-pymodbus only Recommends python3-serial-asyncio and CI installs with
# --no-install-recommends, so stand in empty modules: the TCP server never touches them.
for _name in ("serial", "serial_asyncio"):
    try:
        __import__(_name)
    except ImportError:
        _stub = types.ModuleType(_name)
        _stub.create_serial_connection = None
        sys.modules[_name] = _stub

from pymodbus.datastore import (  # noqa: E402
    ModbusServerContext,
    ModbusSequentialDataBlock,
    ModbusSlaveContext,
)
from pymodbus.server.async_io import ModbusTcpServer  # noqa: E402


def words(fmt, value):
    """The registers of `value` packed big-endian by struct `fmt` (most significant word first)."""
    raw = struct.pack(">" + fmt, value)
    return list(struct.unpack(">%dH" % (len(raw) // 2), raw))


def little_words(fmt, value):
    """The same registers in little word order: least significant register first."""
    return list(reversed(words(fmt, value)))


def text(s, length):
    """`length` ASCII characters, NUL-padded, two per register, first character in the high byte."""
    raw = s.encode("ascii").ljust(length, b"\0")
    return list(struct.unpack(">%dH" % (length // 2), raw))


HOLDING_SIZE = 100  # addresses 0..99 exist; a read at 200 gets exception 2 (illegal data address)

holding = [0] * HOLDING_SIZE
holding[0:2] = words("f", 21.5)  # temperature: float32, big word order
holding[2:4] = little_words("f", -3.25)  # offset: float32, little word order
holding[4] = words("h", -1234)[0]  # delta: int16
holding[5:7] = words("I", 3_000_000_000)  # energy: uint32 above 2^31
holding[7:11] = words("q", -1_234_567_890_123)  # counter: int64, within the safe range
holding[11:15] = words("Q", 2**63 + 5)  # big: uint64 beyond 2^53, a decimal string
holding[15:19] = text("EF-PLC01", 8)  # tag: string of 8 characters
holding[19] = words("h", 1234)[0]  # pressure: int16 raw 1234, scale 0.1 -> 123.4
holding[20] = 500  # setpoint: uint16, writable
holding[21] = 0b0000_0000_0000_0101  # status word: bit 0 and bit 2 set
holding[22:24] = words("f", float("nan"))  # broken: float32 NaN
holding[24] = 0x1234  # swapped: uint16 with byteOrder little reads 0x3412 = 13330
holding[30:34] = words("d", 1234.5678)  # precise: float64, big word order
holding[40:42] = little_words("i", -100_000)  # flow: int32, little word order
holding[50:52] = little_words("f", 10.0)  # limit: float32, little word order, writable

inputs = [0] * 100
inputs[10:12] = words("f", 230.25)  # voltage: float32
inputs[12] = 4242  # frequency raw: uint16

coils = [False] * 16
coils[0] = True  # running
coils[1] = False  # fault
coils[3] = True  # pump
coils[5] = False  # enable, writable

discrete = [False] * 16
discrete[0] = False  # door
discrete[1] = True  # estop


async def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    unit = int(sys.argv[2]) if len(sys.argv) > 2 else 7
    # zero_mode: protocol address N is block index N (pymodbus otherwise adds 1).
    slave = ModbusSlaveContext(
        hr=ModbusSequentialDataBlock(0, holding),
        ir=ModbusSequentialDataBlock(0, inputs),
        co=ModbusSequentialDataBlock(0, coils),
        di=ModbusSequentialDataBlock(0, discrete),
        zero_mode=True,
    )
    # single=False: only `unit` answers; another unit id gets no response at all.
    context = ModbusServerContext(slaves={unit: slave}, single=False)
    server = ModbusTcpServer(context, address=("127.0.0.1", port), allow_reuse_address=True)
    task = asyncio.create_task(server.serve_forever())
    await server.serving
    bound = server.server.sockets[0].getsockname()[1]
    print("listening %d" % bound, flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.shutdown()
    task.cancel()


if __name__ == "__main__":
    asyncio.run(main())
