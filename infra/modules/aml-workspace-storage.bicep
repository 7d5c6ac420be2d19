metadata description = 'Relays the workspace storage role assignments to the resource group of the workspace\'s storage account, which only the workspace knows (a module scope must be known when the deployment starts, and a module parameter is).'

@description('Resource id of the workspace storage account.')
param storageAccountId string

@description('Blob container of the workspace\'s default datastore.')
param containerName string

@description('Principal (object) id of the function app identity.')
param appPrincipalId string

@description('Principal id of the compute cluster identity.')
param computePrincipalId string

@description('Role definition id granted to both on the container.')
param roleId string

module containerRoles 'storage-container-roles.bicep' = {
  name: 'workspace-storage-roles-${uniqueString(storageAccountId, containerName)}'
  scope: resourceGroup(split(storageAccountId, '/')[2], split(storageAccountId, '/')[4])
  params: {
    accountName: last(split(storageAccountId, '/'))
    containerName: containerName
    appPrincipalId: appPrincipalId
    computePrincipalId: computePrincipalId
    roleId: roleId
  }
}
