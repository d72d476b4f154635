"""editors/nvim/lua/dgls.lua in a real headless Neovim (Debian's, 0.7.2 here) against the
real `dgls serve`, driven over Neovim's own RPC API with keystrokes a user would type.

0.7.2 has no inline completion: the completion path runs for real; the 0.12 path is
loaded and executed with a recording stand-in for `vim.lsp.inline_completion`, which
0.7.2 lacks (README says which version was tested how)."""

from __future__ import annotations

import shutil
import time

import pytest

from .conftest import SMALL
from .editors import EDITORS, server_env

NVIM = shutil.which("nvim")
pytestmark = pytest.mark.skipif(NVIM is None, reason="nvim not installed (apt-get install neovim; tests/run.sh does as root or with sudo)")
RUNTIME = EDITORS / "nvim"


@pytest.fixture
def nvim(monkeypatch, runtime, fixed_checkpoint):
    """A headless Neovim with `dgls serve` (the module's default command) on PATH."""
    pynvim = pytest.importorskip("pynvim")
    for key, value in server_env(runtime, fixed_checkpoint).items():
        monkeypatch.setenv(key, value)
    vim = pynvim.attach("child", argv=[NVIM, "--embed", "--headless", "--clean", "-n"])
    vim.command(f"set runtimepath+={RUNTIME}")
    yield vim
    try:
        vim.exec_lua("for _, c in pairs(vim.lsp.get_active_clients()) do c.stop(true) end")
        vim.command("qa!")
    except Exception:  # the child is gone already
        pass
    vim.close()


def wait_for(check, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def edit_attached(vim, path, text: str):
    path.write_text(text)
    vim.command(f"edit {path}")
    wait_for(lambda: vim.exec_lua(
        "for _, c in pairs(vim.lsp.buf_get_clients(0)) do if c.name == 'dgls' and c.initialized then return true end end"
        " return false"), what="dgls attached to the buffer")


def test_neovim_version_is_what_the_readme_records(nvim):
    version = nvim.exec_lua("local v = vim.version() return {v.major, v.minor, v.patch}")
    assert version >= [0, 7, 0]


def test_completion_path_inserts_the_suggestion(nvim, tmp_path, answer):
    """Neovim < 0.12: the user presses the trigger key at the end of `return ` and the
    suggestion is completed into the buffer."""
    assert nvim.exec_lua("return require('dgls').setup(...)", {"settings": SMALL}) == "completion"
    edit_attached(nvim, tmp_path / "app.py", "def f(value):\n    return \n")
    assert nvim.exec_lua("return vim.bo.omnifunc") == "v:lua.vim.lsp.omnifunc"
    nvim.command("normal! 2G")
    nvim.input("A<M-\\>")  # the module's trigger key
    line = wait_for(lambda: (lambda l: l if l != "    return " else None)(nvim.eval("getline(2)")),
                    what="the suggestion in the buffer")
    nvim.input("<Esc>")
    assert line.startswith("    return " + answer)
    assert nvim.eval("getline(1)") == "def f(value):"


def test_inline_path_is_chosen_on_0_12_and_its_keys_act(nvim, tmp_path):
    """The 0.12 branch, executed here: `has('nvim-0.12')` answers 1 and a recording stand-in
    takes the place of vim.lsp.inline_completion (absent before 0.12). The real server is
    attached; the module must enable inline completion for the buffer and map its keys."""
    nvim.exec_lua("""
        local real_has = vim.fn.has
        vim.fn.has = function(feature) if feature == 'nvim-0.12' then return 1 end return real_has(feature) end
        _G.calls = {}
        vim.lsp.inline_completion = {
          enable = function(on, filter) table.insert(_G.calls, {'enable', on, filter.bufnr}) end,
          get = function(opts) _G.last_get = opts table.insert(_G.calls, {'get'}) return false end,
          select = function(opts) table.insert(_G.calls, {'select', opts.count}) end,
        }
    """)
    assert nvim.exec_lua("return require('dgls').setup(...)", {"settings": SMALL}) == "inline"
    edit_attached(nvim, tmp_path / "app.py", "print()\n")
    bufnr = nvim.current.buffer.number
    assert nvim.exec_lua("return _G.calls[1]") == ["enable", True, bufnr]
    assert nvim.exec_lua("return vim.bo.omnifunc") != "v:lua.vim.lsp.omnifunc"  # not the completion path
    mapped = nvim.exec_lua("""
        local out = {}
        for name, lhs in pairs(require('dgls').config.keys) do
          local m = vim.fn.maparg(lhs, 'i', false, true)
          if m.buffer == 1 and (m.desc or ''):find('^dgls: ') then out[name] = m.desc end
        end
        return out
    """)
    assert set(mapped) == {"accept", "accept_word", "accept_line", "next", "prev", "trigger"}
    # Accept-word through its key: the on_accept handler it hands to get() keeps the `)` the
    # suggestion's range covers and accepts only the first word of `x, y)`.
    nvim.command("normal! 1G0f(")
    nvim.input("a<M-w><Esc>")
    wait_for(lambda: nvim.exec_lua("return _G.last_get ~= nil"), what="accept-word to call get()")
    item = nvim.exec_lua("""
        local row, col = 0, 6   -- after `print(`, covering `)`
        local item = {insert_text = 'x, y)', command = {title = 'x'},
                      range = {to_extmark = function() return row, col, row, col + 1 end}}
        local accepted = _G.last_get.on_accept(item)
        return {accepted.insert_text, accepted.command == nil}
    """)
    assert item == ["x)", True]
    # With nothing shown, <Tab> falls through to a real Tab (get() returned false), which
    # the Python filetype expands to spaces up to the next soft tab stop.
    nvim.input("A<Tab><Esc>")
    assert nvim.eval("getline(1)") == "print() "


def test_partial_accept_pieces_in_real_lua(nvim):
    cases = nvim.exec_lua("""
        local d = require('dgls')
        return {d.next_word('  self.items'), d.next_word('(a, b)'), d.next_word('\\n    return x'),
                d.next_line('x = 1\\ny = 2'), d.next_line('only')}
    """)
    assert cases == ["  self", "(", "\n", "x = 1\n", "only"]


def test_the_module_is_valid_lua_for_0_7(nvim):
    """Every line of the module, both paths, compiles in 0.7.2's LuaJIT (loadfile parses the
    whole file, including the 0.12-only functions that never run here)."""
    ok = nvim.exec_lua("local f, err = loadfile(...) return f ~= nil or err", str(RUNTIME / "lua" / "dgls.lua"))
    assert ok is True
