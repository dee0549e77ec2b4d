/**
 * Regression (outside review): an admin could create a role with admin-grade permissions and
 * `mfaRequired: false` and hand it to a password-only account. Administrative roles require MFA; only an
 * owner may waive it, and the waiver is audited.
 */
import { afterEach, beforeEach, describe, expect, test } from 'bun:test'
import { adminPermissionsOf } from '../../src/modules/rbac/mfa-waiver'
import { expectProblem } from '../helpers'
import { eventsOf, makeAdminApp, seedUser } from '../support/admin'

let t: Awaited<ReturnType<typeof makeAdminApp>>
let owner: string
let admin: string
beforeEach(async () => {
  t = await makeAdminApp()
  owner = await seedUser(t.deps, { roles: ['owner'] })
  admin = await seedUser(t.deps, { roles: ['admin'] })
})
afterEach(() => t.close())

const role = async (name: string) => (await t.deps.rbac.listRoles()).find((r) => r.name === name)
const denied = async () => (await eventsOf(t.deps, 'privilege_escalation_denied')).filter((e) => (e.details as { rule?: string })?.rule === 'mfa_waiver')

describe('administrative roles require MFA unless an owner waives it', () => {
  test('which permissions count as administrative (patterns expanded)', () => {
    expect(adminPermissionsOf(['users:read', 'files:read:any', 'authz:check', 'files:write:own'])).toEqual([])
    expect(adminPermissionsOf(['users:*'])).toEqual(['users:delete', 'users:write'])
    expect(adminPermissionsOf(['*:read'])).toEqual(['apikeys:read', 'audit:read'])
    expect(adminPermissionsOf(['sessions:revoke', 'files:*:any'])).toEqual(['files:delete:any', 'sessions:revoke'])
  })

  test('a non-owner creating an administrative role with mfaRequired:false gets 403 mfa_waiver_forbidden; nothing is created', async () => {
    for (const permissions of [['users:read', 'sessions:revoke'], ['users:*'], ['audit:read'], ['roles:assign']]) {
      const name = `r${(await denied()).length}`
      const r = expectProblem(await t.as(admin, 'POST', '/v1/roles', { body: { name, level: 40, permissions, mfaRequired: false } }), 403, 'mfa_waiver_forbidden')
      expect(r.detail).toContain('only an owner')
      expect(await role(name)).toBeUndefined()
    }
    const events = await denied()
    expect(events).toHaveLength(4)
    expect(events[0]).toMatchObject({ actorId: admin, outcome: 'failure' })
    expect(await eventsOf(t.deps, 'role_mfa_waived')).toHaveLength(0)
  })

  test('left out, mfaRequired is switched on for an administrative role; a plain role may go without', async () => {
    const c = await t.as(admin, 'POST', '/v1/roles', { body: { name: 'helpdesk', level: 40, permissions: ['users:read', 'sessions:revoke'] } })
    expect(c.status).toBe(201)
    expect(c.body.mfaRequired).toBe(true)
    const plain = await t.as(admin, 'POST', '/v1/roles', { body: { name: 'reader', level: 30, permissions: ['users:read'], mfaRequired: false } })
    expect(plain.status).toBe(201)
    expect(plain.body.mfaRequired).toBe(false)
    // A password-only holder of the administrative role is confined to enrolment.
    const holder = await seedUser(t.deps, { roles: ['user', 'helpdesk'] })
    expect(await t.deps.rbac.mfaRequiredFor(holder)).toBe(true)
  })

  test('patching: a non-owner cannot switch MFA off an administrative role or add administrative permissions without MFA', async () => {
    expect((await t.as(admin, 'POST', '/v1/roles', { body: { name: 'helpdesk', level: 40, permissions: ['sessions:revoke'] } })).status).toBe(201)
    expect((await t.as(admin, 'POST', '/v1/roles', { body: { name: 'reader', level: 30, permissions: ['users:read'], mfaRequired: false } })).status).toBe(201)
    expectProblem(await t.as(admin, 'PATCH', '/v1/roles/helpdesk', { body: { mfaRequired: false } }), 403, 'mfa_waiver_forbidden')
    expect((await role('helpdesk'))?.mfaRequired).toBe(true)
    expectProblem(await t.as(admin, 'PATCH', '/v1/roles/reader', { body: { permissions: ['users:read', 'users:write'], mfaRequired: false } }), 403, 'mfa_waiver_forbidden')
    expect(await role('reader')).toMatchObject({ permissions: ['users:read'], mfaRequired: false })
    // Adding an administrative permission without saying anything about MFA turns it on.
    const p = await t.as(admin, 'PATCH', '/v1/roles/reader', { body: { permissions: ['users:read', 'users:write'] } })
    expect(p.status).toBe(200)
    expect(p.body.mfaRequired).toBe(true)
    // Dropping the administrative permissions makes MFA optional again.
    const back = await t.as(admin, 'PATCH', '/v1/roles/reader', { body: { permissions: ['users:read'], mfaRequired: false } })
    expect(back.status).toBe(200)
    expect(back.body.mfaRequired).toBe(false)
    expect(await denied()).toHaveLength(2)
  })

  test('an owner may waive MFA on an administrative role; each waiver is a role_mfa_waived event', async () => {
    const c = await t.as(owner, 'POST', '/v1/roles', { body: { name: 'breakglass', level: 80, permissions: ['users:*', 'sessions:revoke'], mfaRequired: false } })
    expect(c.status).toBe(201)
    expect(c.body.mfaRequired).toBe(false)
    expect((await t.as(owner, 'POST', '/v1/roles', { body: { name: 'helpdesk', level: 40, permissions: ['sessions:revoke'] } })).body.mfaRequired).toBe(true)
    const p = await t.as(owner, 'PATCH', '/v1/roles/helpdesk', { body: { mfaRequired: false } })
    expect(p.status).toBe(200)
    expect(p.body.mfaRequired).toBe(false)
    const waived = await eventsOf(t.deps, 'role_mfa_waived')
    expect(waived.map((e) => [e.actorId, (e.details as { role: string }).role])).toEqual([
      [owner, 'breakglass'],
      [owner, 'helpdesk'],
    ])
    expect(waived[0]!.details).toMatchObject({ permissions: ['sessions:revoke', 'users:delete', 'users:write'] })
    // Renaming or describing a waived role is no new waiver.
    expect((await t.as(admin, 'PATCH', '/v1/roles/helpdesk', { body: { description: 'Support desk' } })).status).toBe(200)
    expect(await eventsOf(t.deps, 'role_mfa_waived')).toHaveLength(2)
  })
})
