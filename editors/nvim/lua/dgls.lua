-- dgls for Neovim: suggestions from `dgls serve`.
--
--   Neovim 0.12+: ghost text through the built-in inline completion
--                 (vim.lsp.inline_completion), with accept / accept-word / accept-line keys.
--   Older:        the same suggestions as an ordinary completion item (omnifunc,
--                 <C-x><C-o>, or any completion plugin that reads LSP, e.g. nvim-cmp).
--
-- The path is chosen by version (M.mode()). Usage, after adding editors/nvim to 'runtimepath'
-- or copying this file to ~/.config/nvim/lua/dgls.lua:
--
--   require('dgls').setup({ settings = { debounceMs = 150 } })
--
-- `settings` are dgls's server settings (camelCase, the table in dgls's README); they go to
-- the server as initializationOptions and as the `dgls` section of the workspace settings.

local M = {}

M.defaults = {
  cmd = { 'dgls', 'serve' },
  filetypes = { 'python', 'javascript', 'typescript', 'typescriptreact', 'go', 'rust' },
  settings = {},
  -- Insert-mode keys; set one to false to leave that key alone.
  keys = {
    accept = '<Tab>', -- 0.12+: the whole suggestion (else the key does what it did)
    accept_word = '<M-w>', -- 0.12+: up to the end of the next word
    accept_line = '<M-l>', -- 0.12+: up to the end of the current line of the suggestion
    next = '<M-]>', -- 0.12+: the next candidate
    prev = '<M-[>', -- 0.12+: the previous candidate
    trigger = '<M-\\>', -- ask now: 0.12+ an invoked inline request, older <C-x><C-o>
  },
}

M.config = nil -- the merged options, once setup() ran

--- 'inline' on Neovim 0.12+ (native inline completion), 'completion' before it.
function M.mode()
  if vim.fn.has('nvim-0.12') == 1 and vim.lsp.inline_completion ~= nil then
    return 'inline'
  end
  return 'completion'
end

-- Partial accepts --------------------------------------------------------------------------

--- The start of `text` up to the end of its next word (leading blanks included), or
--- the whole of a first line made only of blanks and punctuation.
function M.next_word(text)
  local word = text:match('^[ \t]*[%w_]+') or text:match('^[ \t]*[^%w_%s]+') or text:match('^[ \t]*\n?')
  return word ~= '' and word or text
end

--- The start of `text` up to the end of its first line (the line break included when more
--- lines follow, so the next accept starts on the new line).
function M.next_line(text)
  local line = text:match('^[^\n]*\n') or text
  return line
end

local function plain_text(insert_text)
  if type(insert_text) == 'string' then
    return insert_text
  end
  -- A snippet: accept its plain text.
  return tostring(require('vim.lsp._snippet_grammar').parse(insert_text.value))
end

--- The on_accept handler for vim.lsp.inline_completion.get() that inserts only `part(text)`.
--- Text the item's range replaces right of the cursor (auto-closed brackets dgls writes
--- over) is kept, as the rest of the suggestion has not been accepted yet.
function M.partial_accept(part)
  return function(item)
    local text = plain_text(item.insert_text)
    local kept = ''
    if item.range ~= nil then
      local row, col, end_row, end_col = item.range:to_extmark()
      if row == end_row and end_col > col then
        kept = vim.api.nvim_buf_get_text(0, row, col, end_row, end_col, {})[1]
      end
    end
    local accepted = part(text)
    item.insert_text = accepted .. kept
    item.command = nil
    if kept ~= '' then
      -- The cursor belongs before the kept text, where the next suggestion starts.
      vim.schedule(function()
        local cursor = vim.api.nvim_win_get_cursor(0)
        vim.api.nvim_win_set_cursor(0, { cursor[1], math.max(0, cursor[2] - #kept) })
      end)
    end
    return item
  end
end

-- The two paths -----------------------------------------------------------------------------

local function map(bufnr, lhs, rhs, desc, expr)
  if lhs then
    vim.keymap.set('i', lhs, rhs, { buffer = bufnr, expr = expr or false, desc = 'dgls: ' .. desc })
  end
end

-- Neovim 0.12+: ghost text.
local function attach_inline(bufnr, keys)
  local ic = vim.lsp.inline_completion
  ic.enable(true, { bufnr = bufnr })
  map(bufnr, keys.accept, function()
    if not ic.get() then
      return keys.accept
    end
  end, 'accept the suggestion', true)
  map(bufnr, keys.accept_word, function()
    ic.get({ on_accept = M.partial_accept(M.next_word) })
  end, 'accept the next word of the suggestion')
  map(bufnr, keys.accept_line, function()
    ic.get({ on_accept = M.partial_accept(M.next_line) })
  end, 'accept the current line of the suggestion')
  map(bufnr, keys.next, function()
    ic.select({ count = 1 })
  end, 'next suggestion')
  map(bufnr, keys.prev, function()
    ic.select({ count = -1 })
  end, 'previous suggestion')
  map(bufnr, keys.trigger, function()
    ic.get() -- with nothing shown, this asks the server (an invoked request)
  end, 'suggest now')
end

-- Older Neovim: an ordinary completion item.
local function attach_completion(bufnr, keys)
  vim.bo[bufnr].omnifunc = 'v:lua.vim.lsp.omnifunc'
  map(bufnr, keys.trigger, '<C-x><C-o>', 'suggest now')
end

local function on_attach(client, bufnr)
  if client.name ~= 'dgls' then
    return
  end
  if M.mode() == 'inline' then
    attach_inline(bufnr, M.config.keys)
  else
    attach_completion(bufnr, M.config.keys)
  end
end

local function client_config()
  local cfg = M.config
  return {
    name = 'dgls',
    cmd = cfg.cmd,
    root_dir = vim.fn.getcwd(),
    init_options = cfg.settings,
    settings = { dgls = cfg.settings },
    on_attach = on_attach,
  }
end

-- Start (or reuse) the client for a buffer: vim.lsp.start where it exists (0.8+), else
-- one client started once and attached to each buffer (0.7).
local client_id = nil
local function start(bufnr)
  if vim.lsp.start ~= nil then
    vim.lsp.start(client_config(), { bufnr = bufnr })
    return
  end
  if client_id == nil or vim.lsp.get_client_by_id(client_id) == nil then
    client_id = vim.lsp.start_client(client_config())
  end
  if client_id ~= nil then
    vim.lsp.buf_attach_client(bufnr, client_id)
  end
end

--- setup({ cmd?, filetypes?, settings?, keys? }): start dgls in buffers of those filetypes.
function M.setup(opts)
  M.config = vim.tbl_deep_extend('force', vim.deepcopy(M.defaults), opts or {})
  if opts and opts.cmd then
    M.config.cmd = opts.cmd -- a list replaces, never merges index by index
  end
  if opts and opts.filetypes then
    M.config.filetypes = opts.filetypes
  end
  local group = vim.api.nvim_create_augroup('dgls', { clear = true })
  vim.api.nvim_create_autocmd('FileType', {
    group = group,
    pattern = M.config.filetypes,
    callback = function(args)
      start(args.buf)
    end,
  })
  return M.mode()
end

return M
